"""PPO's (and GRPO's) math as small pure functions, each checkable against hand-computed values.

Masks are float/bool ``[B, T]`` over response tokens.

On several ranks each holds a share of a step's responses; the statistics that span the batch
are taken over **all ranks' tokens**, so W ranks compute what one process would on the whole
batch: :func:`token_count` is the global count a loss's masked mean divides by (each rank's
gradient is then its share of the global mean's, and the summed gradients are the mean's), and
:func:`whiten` with ``all_ranks`` takes the mean and variance from summed sums and counts. Alone
(no process group) every reduction is the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from videostar.training import distributed as dist


def token_count(mask: Tensor) -> float:
    """The number of set positions of ``mask`` over all ranks (a masked mean's denominator)."""
    return dist.all_sum([float(mask.sum())])[0]


def masked_mean(x: Tensor, mask: Tensor, count: float | None = None) -> Tensor:
    """Mean over the positions where ``mask`` is set (padding must not dilute the statistic).

    ``count``: the denominator, e.g. :func:`token_count` (the batch's tokens on all ranks);
    default this rank's own."""
    mask = mask.to(x.dtype)
    total = mask.sum() if count is None else torch.tensor(float(count), dtype=x.dtype, device=x.device)
    return (x * mask).sum() / total.clamp_min(1.0)


def masked_var(x: Tensor, mask: Tensor, all_ranks: bool = False) -> Tensor:
    """Unbiased variance over masked positions (``all_ranks``: of every rank's positions)."""
    return _moments(x, mask, all_ranks)[1]


def _moments(x: Tensor, mask: Tensor, all_ranks: bool) -> tuple[Tensor, Tensor]:
    """Masked mean and unbiased variance, over this rank's positions or all ranks'."""
    mask = mask.to(x.dtype)
    if not all_ranks:
        n = mask.sum()
        mean = (x * mask).sum() / n.clamp_min(1.0)
        return mean, (((x - mean) ** 2) * mask).sum() / (n.clamp_min(2.0) - 1)
    total, n = dist.all_sum([float((x * mask).sum()), float(mask.sum())])
    mean = torch.tensor(total / max(n, 1.0), dtype=x.dtype, device=x.device)
    (sq,) = dist.all_sum([float((((x - mean) ** 2) * mask).sum())])
    return mean, torch.tensor(sq / (max(n, 2.0) - 1), dtype=x.dtype, device=x.device)


def whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, all_ranks: bool = False) -> Tensor:
    """Zero-mean unit-variance over masked positions; keeps the advantage scale fixed per batch.

    With ``shift_mean=False`` the mean is added back (only the scale is normalised).
    Padding positions come out as 0. ``all_ranks``: the mean and variance of every rank's
    positions (the whole step's batch), not only this rank's share.
    """
    mean, var = _moments(x, mask, all_ranks)
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
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, clip: float = 0.2,
    count: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Clipped surrogate: ``max(-A r, -A clip(r))`` -> ``(loss, fraction of tokens clipped)``,
    masked means over ``count`` tokens (:func:`masked_mean`)."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask, count)
    clipfrac = masked_mean((clipped > unclipped).to(logprobs.dtype), mask, count)
    return loss, clipfrac


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float = 0.2,
    count: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Clipped value loss ``0.5 * max((v - R)^2, (v_clip - R)^2)`` -> ``(loss, clipfrac)``,
    masked means over ``count`` tokens.

    The value may move at most ``clip`` from its rollout estimate, as the policy may.
    """
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    l1 = (values - returns) ** 2
    l2 = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(l1, l2), mask, count)
    clipfrac = masked_mean((l2 > l1).to(values.dtype), mask, count)
    return loss, clipfrac


def entropy_from_logits(logits: Tensor, mask: Tensor, count: float | None = None) -> Tensor:
    """Mean token entropy of the policy over response positions (a collapse diagnostic)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    ent = -(logp.exp() * logp).sum(dim=-1)
    return masked_mean(ent, mask, count)


def logprobs_from_logits(logits: Tensor, tokens: Tensor) -> Tensor:
    """Log-probability of each of ``tokens`` under ``logits`` ``[B, T, V]`` -> ``[B, T]``."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def ranking_accuracy(scores: list[float], correct: list[bool]) -> float:
    """The fraction of (correct, wrong) response pairs the scores order correctly, ties counting
    half: the reward model's AUC on the responses the Parser-Verifier labelled. NaN when there is
    no such pair (all responses right, or all wrong).

    Reward hacking shows as the reward model's scores rising while this and the verifier's pass
    rate fall: the policy found what the reward model likes and the labels do not.
    """
    right = [s for s, ok in zip(scores, correct, strict=True) if ok]
    wrong = [s for s, ok in zip(scores, correct, strict=True) if not ok]
    if not right or not wrong:
        return math.nan
    wins = sum((r > w) + 0.5 * (r == w) for r in right for w in wrong)
    return wins / (len(right) * len(wrong))


def adaptive_kl_coef(coef: float, kl: float, target: float, horizon: int, samples: int) -> float:
    """The KL coefficient after a step whose responses had mean KL ``kl`` (Ziegler et al. 2019,
    "Fine-Tuning Language Models from Human Preferences", as TRL's ``AdaptiveKLController``): a
    proportional controller, ``coef * (1 + clip(kl / target - 1, -0.2, 0.2) * samples / horizon)``,
    that raises the penalty while the KL is above ``target`` and lowers it below, by at most
    20 % per ``horizon`` samples."""
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return coef * (1.0 + error * samples / horizon)

