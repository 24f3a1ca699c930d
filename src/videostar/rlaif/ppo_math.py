"""PPO's math as small pure functions, each checkable against hand-computed values.

Masks are float/bool ``[B, T]`` over response tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over the positions where ``mask`` is set (padding must not dilute the statistic)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def masked_var(x: Tensor, mask: Tensor) -> Tensor:
    """Unbiased variance over masked positions."""
    mask = mask.to(x.dtype)
    n = mask.sum().clamp_min(2.0)
    mean = masked_mean(x, mask)
    return (((x - mean) ** 2) * mask).sum() / (n - 1)


def whiten(x: Tensor, mask: Tensor, shift_mean: bool = True) -> Tensor:
    """Zero-mean unit-variance over masked positions; keeps the advantage scale fixed per batch.

    With ``shift_mean=False`` the mean is added back (only the scale is normalised).
    Padding positions come out as 0.
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over response tokens -> ``(advantages, returns)``.

    Positions where ``mask`` is 0 are skipped (not treated as terminal), so left-, right- or
    un-padded masks all work; the value after the last valid token is 0 (episode ends there).
    With gamma = lambda = 1 the advantage is reward-to-go minus value.
    """
    mask_b = mask.bool()
    b, t_len = rewards.shape
    adv = torch.zeros_like(rewards)
    next_value = rewards.new_zeros(b)
    last = rewards.new_zeros(b)
    for t in reversed(range(t_len)):
        m = mask_b[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        a = delta + gamma * lam * last
        adv[:, t] = torch.where(m, a, torch.zeros_like(a))
        last = torch.where(m, a, last)
        next_value = torch.where(m, values[:, t], next_value)
    returns = (adv + values) * mask_b.to(values.dtype)
    return adv, returns


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token KL estimate ``log pi - log pi_ref`` on the sampled tokens (unbiased in mean)."""
    return logprobs - ref_logprobs


def last_index(mask: Tensor) -> Tensor:
    """Index of the last set position per row (0 for an empty row)."""
    t_len = mask.shape[1]
    return (t_len - 1 - mask.bool().flip(1).int().argmax(dim=1)).clamp_min(0)


def token_rewards(
    score: Tensor, kl: Tensor, mask: Tensor, kl_coef: float, no_eos: Tensor | None = None,
    eos_penalty: float = 0.0, length_penalty: float = 0.0,
) -> Tensor:
    """Per-token rewards: ``-kl_coef * kl`` everywhere, the sequence reward on the last token.

    The sequence reward is the score, minus ``eos_penalty`` for a truncated response (no EOS:
    the reward model never saw a finished answer) and minus ``length_penalty * length`` (the
    reward model favours long answers; this counters that drift).
    """
    m = mask.to(kl.dtype)
    rewards = -kl_coef * kl * m
    length = m.sum(dim=1)
    seq = score.to(kl.dtype) - length_penalty * length
    if no_eos is not None:
        seq = seq - eos_penalty * no_eos.to(kl.dtype)
    idx = last_index(mask)
    rows = torch.arange(kl.shape[0], device=kl.device)
    rewards[rows, idx] = rewards[rows, idx] + seq
    return rewards


def policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, clip: float = 0.2
) -> tuple[Tensor, Tensor]:
    """Clipped surrogate: ``max(-A r, -A clip(r))`` -> ``(loss, fraction of tokens clipped)``."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
    return loss, clipfrac


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float = 0.2
) -> tuple[Tensor, Tensor]:
    """Clipped value loss ``0.5 * max((v - R)^2, (v_clip - R)^2)`` -> ``(loss, clipfrac)``.

    The value may move at most ``clip`` from its rollout estimate, as the policy may.
    """
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    l1 = (values - returns) ** 2
    l2 = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(l1, l2), mask)
    clipfrac = masked_mean((l2 > l1).to(values.dtype), mask)
    return loss, clipfrac


def entropy_from_logits(logits: Tensor, mask: Tensor) -> Tensor:
    """Mean token entropy of the policy over response positions (a collapse diagnostic)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    ent = -(logp.exp() * logp).sum(dim=-1)
    return masked_mean(ent, mask)


def logprobs_from_logits(logits: Tensor, tokens: Tensor) -> Tensor:
    """Log-probability of each of ``tokens`` under ``logits`` ``[B, T, V]`` -> ``[B, T]``."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
