"""PPO from AI feedback (VLM-RLAIF §3.4) for a video LMM with LoRA.

Released settings: KL coefficient 0.1 (fixed), gamma = lambda = 1, clip 0.2 for policy and
value, value coefficient 0.1, whitened advantages, 2 PPO epochs per rollout batch, sampling at
temperature 1.0, a penalty for responses without EOS and a length penalty. The reference
policy is the same weights with the LoRA adapter disabled, so no second copy is held in memory.
The value model is a :class:`RewardModel` (initialised from the trained reward model, on a base
of its own); the reward is any callable (a reward model or a rule).

The math lives in small pure functions (masks are float/bool ``[B, T]`` over response tokens)
so each piece can be checked against hand-computed values.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from videostar.config import PPOConfig
from videostar.model import LoadedModel
from videostar.train.reward import RewardModel

RewardFn = Callable[[list[str], list[str], list[np.ndarray]], Tensor]
"""``reward_fn(prompts, responses, frames) -> Tensor[B]``: one scalar score per response."""

STATE_FILE = "ppo_state.pt"


# ----------------------------------------------------------------------------- pure functions


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


# ----------------------------------------------------------------------------- trainer


@dataclass
class Rollout:
    """One sampled batch with everything PPO needs, all ``[B, T]`` over response tokens."""

    prompts: list[str]
    frames: list[np.ndarray]
    responses: list[str]
    tokens: Tensor
    mask: Tensor
    logprobs: Tensor
    ref_logprobs: Tensor
    values: Tensor
    scores: Tensor
    rewards: Tensor
    advantages: Tensor
    returns: Tensor
    kl: Tensor


def _eos_ids(lm: LoadedModel) -> list[int]:
    ids = lm.model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if lm.tokenizer.eos_token_id is not None:
        ids.append(lm.tokenizer.eos_token_id)
    return sorted(set(ids))


class PPOTrainer:
    """PPO on a LoRA-wrapped video LMM (``add_lora`` first) with a separate value model."""

    def __init__(
        self, lm: LoadedModel, reward_fn: RewardFn, critic: RewardModel, cfg: PPOConfig | None = None,
    ) -> None:
        if not hasattr(lm.model, "disable_adapter"):
            raise ValueError("PPOTrainer needs a LoRA-wrapped policy (videostar.model.add_lora)")
        self.lm, self.reward_fn, self.critic, self.cfg = lm, reward_fn, critic, cfg or PPOConfig()
        critic.activate()
        self.params = [p for p in lm.model.parameters() if p.requires_grad]
        self.critic_params = [p for p in critic.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params + self.critic_params, lr=self.cfg.lr,
                                           weight_decay=0.0)
        self.step_count = 0
        self.history: list[dict[str, float]] = []
        self.eos_ids = _eos_ids(lm)

    # -- model passes

    def _joined(self, prompts: list[str], frames: list[np.ndarray], tokens: Tensor, mask: Tensor
                ) -> tuple[dict[str, Any], int]:
        """Left-padded prompts with the responses appended -> ``(inputs, prompt length)``."""
        inputs = self.lm.encode_prompts(prompts, frames)
        n_prompt = inputs["input_ids"].shape[1]
        shape = inputs["input_ids"].shape
        tails = {"input_ids": tokens, "attention_mask": mask}
        for key, value in list(inputs.items()):  # e.g. mm_token_type_ids: 0 on text tokens
            if torch.is_tensor(value) and value.shape == shape:
                tail = tails.get(key, torch.zeros_like(tokens))
                inputs[key] = torch.cat([value, tail.to(value.dtype)], dim=1)
        return inputs, n_prompt

    def _logits(self, inputs: dict[str, Any], n_prompt: int, t_len: int, reference: bool = False
                ) -> Tensor:
        """Policy (or reference) logits predicting each response token: position ``i - 1``
        predicts token ``i``."""
        if reference:
            with self.lm.model.disable_adapter():
                out = self.lm.model(**inputs)
        else:
            out = self.lm.model(**inputs)
        return out.logits[:, n_prompt - 1:n_prompt - 1 + t_len]

    def _values(self, inputs: dict[str, Any], n_prompt: int, t_len: int) -> Tensor:
        """The value model's estimate at the state before each response token."""
        return self.critic.token_values(inputs, n_prompt - 1, t_len)

    def _response_mask(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens up to and including the first EOS -> ``(mask, no_eos)``."""
        is_eos = torch.isin(tokens, torch.tensor(self.eos_ids, device=tokens.device))
        seen_before = torch.cumsum(is_eos.int(), dim=1) - is_eos.int()
        mask = seen_before == 0
        return mask, ~is_eos.any(dim=1)

    @torch.no_grad()
    def sample(self, prompts: list[str], frames: list[np.ndarray]) -> tuple[Tensor, list[str]]:
        """Sample responses at the configured temperature -> ``(token ids [B, T], texts)``."""
        inputs = self.lm.encode_prompts(prompts, frames)
        self.lm.model.eval()
        out = self.lm.model.generate(
            **inputs, max_new_tokens=self.cfg.max_new_tokens, pad_token_id=self.lm.pad_token_id,
            do_sample=True, temperature=self.cfg.temperature, top_k=0, top_p=1.0,
        )
        tokens = out[:, inputs["input_ids"].shape[1]:]
        texts = self.lm.processor.batch_decode(tokens, skip_special_tokens=True)
        return tokens, [t.strip() for t in texts]

    @torch.no_grad()
    def rollout(self, prompts: list[str], frames: list[np.ndarray]) -> Rollout:
        """Sample, score, and compute KL-shaped rewards, GAE advantages and returns."""
        cfg = self.cfg
        tokens, texts = self.sample(prompts, frames)
        mask, no_eos = self._response_mask(tokens)
        tokens = torch.where(mask, tokens, torch.full_like(tokens, self.lm.pad_token_id))
        inputs, n_prompt = self._joined(prompts, frames, tokens, mask)
        t_len = tokens.shape[1]
        logprobs = logprobs_from_logits(self._logits(inputs, n_prompt, t_len), tokens)
        ref_logprobs = logprobs_from_logits(self._logits(inputs, n_prompt, t_len, True), tokens)
        values = self._values(inputs, n_prompt, t_len)
        scores = torch.as_tensor(self.reward_fn(prompts, texts, frames), dtype=torch.float32)
        scores = scores.to(tokens.device)
        kl = kl_penalty(logprobs, ref_logprobs) * mask
        rewards = token_rewards(scores, kl, mask, cfg.kl_coef, no_eos, cfg.eos_penalty,
                                cfg.length_penalty)
        advantages, returns = gae(rewards, values * mask, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = whiten(advantages, mask)
        return Rollout(prompts, frames, texts, tokens, mask, logprobs, ref_logprobs, values * mask,
                       scores, rewards, advantages, returns, kl)

    def step(self, prompts: list[str], frames: list[np.ndarray]) -> dict[str, float]:
        """One PPO iteration: a rollout, then ``ppo_epochs`` of shuffled minibatch updates."""
        started = time.perf_counter()
        cfg = self.cfg
        ro = self.rollout(prompts, frames)
        self.lm.model.train()
        self.critic.train()
        n = len(prompts)
        stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "clipfrac": [],
                                         "value_clipfrac": [], "entropy": []}
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(n).tolist()
            for start in range(0, n, cfg.minibatch_size):
                idx = order[start:start + cfg.minibatch_size]
                mb = torch.tensor(idx, device=ro.tokens.device)
                mask = ro.mask[mb]
                t_len = int(mask.sum(dim=1).max())  # drop columns that are padding everywhere
                mask, tokens = mask[:, :t_len], ro.tokens[mb, :t_len]
                inputs, n_prompt = self._joined([ro.prompts[i] for i in idx],
                                                [ro.frames[i] for i in idx], tokens, mask)
                logits = self._logits(inputs, n_prompt, t_len)
                values = self._values(inputs, n_prompt, t_len)
                logprobs = logprobs_from_logits(logits, tokens)
                pg, clipfrac = policy_loss(logprobs, ro.logprobs[mb, :t_len],
                                           ro.advantages[mb, :t_len], mask, cfg.clip)
                vl, vclip = value_loss(values, ro.values[mb, :t_len], ro.returns[mb, :t_len],
                                       mask, cfg.value_clip)
                loss = pg + cfg.value_coef * vl
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                torch.nn.utils.clip_grad_norm_(self.critic_params, cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    stats["entropy"].append(float(entropy_from_logits(logits, mask)))
                for key, value in (("policy_loss", pg), ("value_loss", vl), ("clipfrac", clipfrac),
                                   ("value_clipfrac", vclip)):
                    stats[key].append(float(value.detach()))
        self.lm.model.eval()
        self.critic.eval()
        self.step_count += 1
        record = {
            "step": self.step_count,
            "reward": float(ro.scores.mean()),
            "kl": float((ro.kl.sum(dim=1)).mean()),
            "response_length": float(ro.mask.float().sum(dim=1).mean()),
            **{k: float(np.mean(v)) for k, v in stats.items()},
            "seconds": round(time.perf_counter() - started, 3),
        }
        self.history.append(record)
        return record

    # -- checkpoints

    @property
    def _critic_adapter(self) -> str:
        return self.critic.adapter or "default"

    def save_checkpoint(self, out: str | Path) -> Path:
        """Policy and value adapters, value head, optimizer, RNG states and step, so a resumed run
        continues exactly.

        The adapter is also written with ``save_pretrained`` under ``adapter/`` for loading as
        a model; the resumable state is one ``ppo_state.pt`` written atomically.
        """
        from peft import get_peft_model_state_dict

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.lm.model.save_pretrained(out / "adapter")
        state = {
            "step": self.step_count,
            "history": self.history,
            "config": asdict(self.cfg),
            "adapter": get_peft_model_state_dict(self.lm.model),
            "value_adapter": get_peft_model_state_dict(self.critic.backbone,
                                                       adapter_name=self._critic_adapter),
            "value_head": self.critic.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }
        tmp = out / (STATE_FILE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(out / STATE_FILE)
        return out

    def load_checkpoint(self, path: str | Path) -> int:
        """Restore everything ``save_checkpoint`` wrote; returns the step to continue from."""
        from peft import set_peft_model_state_dict

        state = torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=False)
        set_peft_model_state_dict(self.lm.model, state["adapter"])
        set_peft_model_state_dict(self.critic.backbone, state["value_adapter"],
                                  adapter_name=self._critic_adapter)
        self.critic.head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.step_count = int(state["step"])
        self.history = list(state["history"])
        return self.step_count
