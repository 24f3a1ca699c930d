"""PPO from AI feedback (the VLM-RLAIF paper, section 3.4) for a video LMM with LoRA: the
trainer, and a whole run.

Released settings: KL coefficient 0.1 (fixed), gamma = lambda = 1, clip 0.2 for policy and
value, value coefficient 0.1, whitened advantages, 2 PPO epochs per rollout batch, sampling at
temperature 1.0, a penalty for responses without EOS and a length penalty. The reference
policy is the same weights with the LoRA adapter disabled, so no second copy is held in memory.
The value model is a :class:`RewardModel` (initialised from the trained reward model, sharing
its base: the reward model's adapter is loaded twice); the reward is any callable (a reward
model or a rule). The math is in :mod:`videostar.rlaif.ppo_math`.

A run (:func:`train_ppo`) writes a resumable checkpoint every ``save_every`` steps and at the
end, in the one format of every trainer (:mod:`videostar.training.checkpoints`: the adapters,
value head, optimizer, history and RNG), keeping the newest ``keep_checkpoints``; a run that
finds one continues from it (a retried pipeline step loses no finished step), from the one
before when the newest cannot be read.
Mean reward on held-out prompts is measured before and after, with the same sampling seed,
which is the number that says whether PPO helped.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from videostar.config import PPOConfig, RunConfig, VerifyConfig, VideoConfig
from videostar.data.records import Record
from videostar.generation import row_seed
from videostar.model import LoadedModel, disable_dropout, save_model
from videostar.resume import file_hash, model_content, stamp_digest
from videostar.rlaif.policy import PolicyTrainer, run_metrics, run_steps, start_policy
from videostar.rlaif.ppo_math import (
    adaptive_kl_coef,
    entropy_from_logits,
    gae,
    kl_penalty,
    logprobs_from_logits,
    policy_loss,
    ranking_accuracy,
    token_count,
    token_rewards,
    value_loss,
    whiten,
)
from videostar.rlaif.reward_model import RewardModel, load_reward_and_value
from videostar.training import distributed as dist
from videostar.training.checkpoints import Checkpoints, trainable
from videostar.verify import verify_record

RewardFn = Callable[[list[str], list[str], list[np.ndarray]], Tensor]
"""``reward_fn(prompts, responses, frames) -> Tensor[B]``: one scalar score per response."""


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


@dataclass(frozen=True)
class Share:
    """Which rows of a step's whole batch (of ``total`` prompts, over all ranks) this rank holds:
    its ``positions`` in that batch. Minibatches are drawn over the whole batch, so W ranks
    update with the minibatches one process would."""

    positions: tuple[int, ...]
    total: int

    @staticmethod
    def of(total: int) -> Share:
        """This rank's share of a batch of ``total``: rows ``rank, rank + W, ...``."""
        return Share(tuple(range(dist.rank(), total, dist.world_size())), total)


class PPOTrainer(PolicyTrainer):
    """PPO on a LoRA-wrapped video LMM (``add_lora`` first) with a separate value model."""

    cfg: PPOConfig

    def __init__(
        self, lm: LoadedModel, reward_fn: RewardFn, critic: RewardModel, cfg: PPOConfig | None = None,
        verify: VerifyConfig | None = None,
    ) -> None:
        super().__init__(lm, cfg or PPOConfig())
        self.reward_fn, self.critic, self.verify = reward_fn, critic, verify
        self.kl_coef = self.cfg.kl_coef
        disable_dropout(critic)  # the values come from deterministic passes, as the logprobs
        critic.activate()
        self.critic_params = [p for p in critic.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params + self.critic_params, lr=self.cfg.lr,
                                           weight_decay=0.0)

    # -- model passes

    def _values(self, inputs: dict[str, Any], n_prompt: int, t_len: int) -> Tensor:
        """The value model's estimate at the state before each response token."""
        return self.critic.token_values(inputs, n_prompt - 1, t_len)

    @torch.no_grad()
    def rollout(self, prompts: list[str], frames: list[np.ndarray], seeds: list[int] | None = None
                ) -> Rollout:
        """Sample (row ``i`` from ``seeds[i]`` when given), score, and compute KL-shaped rewards,
        GAE advantages and returns; advantages are whitened over every rank's tokens."""
        cfg = self.cfg
        tokens, mask, no_eos, texts = self.sampled_tokens(prompts, frames, seeds)
        inputs, n_prompt = self._joined(prompts, frames, tokens, mask)
        t_len = tokens.shape[1]
        logprobs = logprobs_from_logits(self._logits(inputs, n_prompt, t_len), tokens)
        ref_logprobs = logprobs_from_logits(self._logits(inputs, n_prompt, t_len, True), tokens)
        values = self._values(inputs, n_prompt, t_len)
        scores = torch.as_tensor(self.reward_fn(prompts, texts, frames), dtype=torch.float32)
        scores = scores.to(tokens.device)
        kl = kl_penalty(logprobs, ref_logprobs) * mask
        rewards = token_rewards(scores, kl, mask, self.kl_coef, no_eos, cfg.eos_penalty,
                                cfg.length_penalty)
        advantages, returns = gae(rewards, values * mask, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = whiten(advantages, mask, all_ranks=True)
        return Rollout(prompts, frames, texts, tokens, mask, logprobs, ref_logprobs, values * mask,
                       scores, rewards, advantages, returns, kl)

    def step(self, prompts: list[str], frames: list[np.ndarray], records: list[Record] | None = None,
             seeds: list[int] | None = None, share: Share | None = None) -> dict[str, float]:
        """One PPO iteration: a rollout, then ``ppo_epochs`` of shuffled minibatch updates.

        ``records`` (the prompts' records) let the Parser-Verifier label the samples (with the
        trainer's ``verify``): the step then reports their pass rate and the reward model's
        ranking accuracy on them. On several ranks each calls this with its ``share`` of the
        step's batch; every statistic is the whole batch's.
        """
        started = time.perf_counter()
        cfg = self.cfg
        share = share or Share(tuple(range(len(prompts))), len(prompts))
        ro = self.rollout(prompts, frames, seeds)
        self.lm.model.train()
        self.critic.train()
        mine = {pos: i for i, pos in enumerate(share.positions)}
        stats = np.zeros(5)  # policy loss, value loss, clip fraction, value clip fraction, entropy
        updates = 0
        for epoch in range(cfg.ppo_epochs):
            # one permutation of the whole batch on every rank: the minibatches of one process
            gen = torch.Generator().manual_seed(row_seed(cfg.seed, f"ppo/{self.step_count}/{epoch}"))
            order = torch.randperm(share.total, generator=gen).tolist()
            for start in range(0, share.total, cfg.minibatch_size):
                idx = [mine[pos] for pos in order[start:start + cfg.minibatch_size] if pos in mine]
                self.optimizer.zero_grad(set_to_none=True)
                count = token_count(ro.mask[idx])  # the minibatch's tokens on all ranks
                local = [0.0] * 5  # a rank without rows in this minibatch still joins the sums
                if idx:
                    pg, vl, clipfrac, vclip, entropy = self._minibatch(ro, idx, count)
                    (pg + cfg.value_coef * vl).backward()
                    local = [float(x.detach()) for x in (pg, vl, clipfrac, vclip, entropy)]
                dist.sum_gradients(self.params + self.critic_params)
                torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                torch.nn.utils.clip_grad_norm_(self.critic_params, cfg.max_grad_norm)
                self.optimizer.step()
                stats += np.array(dist.all_sum(local))
                updates += 1
        self.lm.model.eval()
        self.critic.eval()
        self.step_count += 1
        stats /= max(updates, 1)
        n_total, score_sum, kl_sum, length_sum = dist.all_sum(
            [len(prompts), float(ro.scores.sum()), float(ro.kl.sum()), float(ro.mask.sum())])
        record = {
            "step": self.step_count,
            "reward": score_sum / n_total,
            "kl": kl_sum / n_total,
            "kl_coef": self.kl_coef,
            "response_length": length_sum / n_total,
            **self._verified(ro, records),
            **dict(zip(("policy_loss", "value_loss", "clipfrac", "value_clipfrac", "entropy"),
                       stats.tolist(), strict=True)),
            "seconds": round(time.perf_counter() - started, 3),
        }
        self.history.append(record)
        self._adapt_kl(record)
        return record

    def _minibatch(self, ro: Rollout, idx: list[int], count: float) -> tuple[Tensor, ...]:
        """Rows ``idx`` of the rollout through the policy and value model -> their share of the
        minibatch's policy loss, value loss, clip fractions and entropy: sums over their tokens
        divided by ``count``, the minibatch's tokens on all ranks (summed over the ranks, the
        means one process computes)."""
        cfg = self.cfg
        mb = torch.tensor(idx, device=ro.tokens.device)
        mask = ro.mask[mb]
        t_len = int(mask.sum(dim=1).max())  # drop columns that are padding everywhere
        mask, tokens = mask[:, :t_len], ro.tokens[mb, :t_len]
        inputs, n_prompt = self._joined([ro.prompts[i] for i in idx], [ro.frames[i] for i in idx],
                                        tokens, mask)
        logits = self._logits(inputs, n_prompt, t_len)
        values = self._values(inputs, n_prompt, t_len)
        logprobs = logprobs_from_logits(logits, tokens)
        pg, clipfrac = policy_loss(logprobs, ro.logprobs[mb, :t_len], ro.advantages[mb, :t_len], mask,
                                   cfg.clip, count)
        vl, vclip = value_loss(values, ro.values[mb, :t_len], ro.returns[mb, :t_len], mask,
                               cfg.value_clip, count)
        with torch.no_grad():
            entropy = entropy_from_logits(logits, mask, count)
        return pg, vl, clipfrac, vclip, entropy

    def _verified(self, ro: Rollout, records: list[Record] | None) -> dict[str, float]:
        """The Parser-Verifier's pass rate of the step's samples (the true reward) and the reward
        model's ranking accuracy on them (:func:`ranking_accuracy`), over every rank's samples;
        none without records or a verifier configuration."""
        if records is None or self.verify is None:
            return {}
        passed = [verify_record(r, text, self.verify).passed for r, text in zip(records, ro.responses,
                                                                                strict=True)]
        parts = dist.gather_objects((ro.scores.tolist(), passed))
        scores = [x for s, _ in parts for x in s]
        labels = [x for _, p in parts for x in p]
        return {"verifier_pass_rate": float(np.mean(labels)) if labels else float("nan"),
                "reward_model_auc": ranking_accuracy(scores, labels)}

    def _adapt_kl(self, record: dict[str, float]) -> None:
        """The next step's KL coefficient (``kl_target`` set: the adaptive controller)."""
        if self.cfg.kl_target is not None:
            self.kl_coef = adaptive_kl_coef(record["kl_coef"], record["kl"], self.cfg.kl_target,
                                            self.cfg.kl_horizon, self.cfg.batch_size)

    def resume(self, checkpoints: Checkpoints) -> int | None:
        """As :meth:`PolicyTrainer.resume`, with the KL coefficient the run had reached."""
        step = super().resume(checkpoints)
        if self.history:
            self._adapt_kl(self.history[-1])
        return step

    # -- checkpoints

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        """What a checkpoint holds of the models: the policy's adapter, the value model's
        adapter and head."""
        return {**super().trainable(), **{f"value.{k}": p for k, p in trainable(self.critic).items()}}


def reward_scorer(rm: RewardModel, batch_size: int = 8) -> Callable[..., torch.Tensor]:
    """The reward model as PPO's ``reward_fn``."""
    def score(prompts: list[str], responses: list[str], frames: list[np.ndarray]) -> torch.Tensor:
        return rm.score(prompts, responses, frames, batch_size)
    return score


def heldout_reward(trainer: PolicyTrainer, prompts: list[str], frames: list[np.ndarray],
                   samples: int, seed: int, score: Callable[[slice, list[str]], Tensor] | None = None
                   ) -> float:
    """Mean reward of sampled responses on held-out prompts: the ``k``-th sample of prompt ``i``
    draws from ``row_seed(seed, "heldout/k/i")``, so before and after see the same random numbers
    and every rank measures the same (each measures it all: the pass is short beside training).

    ``score(rows, texts)`` scores the responses to ``prompts[rows]``; by default the trainer's
    ``reward_fn`` (GRPO passes its verifier, which needs the records rather than the prompts).
    """
    if not prompts:
        return float("nan")
    if score is None:
        assert isinstance(trainer, PPOTrainer), "a trainer without reward_fn needs a score"
        reward_fn = trainer.reward_fn

        def score(sl: slice, texts: list[str]) -> Tensor:
            return reward_fn(prompts[sl], texts, frames[sl])
    scores = []
    for k in range(samples):
        for i in range(0, len(prompts), trainer.cfg.batch_size):
            sl = slice(i, i + trainer.cfg.batch_size)
            seeds = [row_seed(seed, f"heldout/{k}/{j}") for j in range(len(prompts))[sl]]
            _, texts = trainer.sample(prompts[sl], frames[sl], seeds)
            scores.append(torch.as_tensor(score(sl, texts), dtype=torch.float32))
    return float(torch.cat(scores).mean())


def step_batch(n: int, size: int, seed: int, step: int) -> list[int]:
    """The prompts of step ``step``: a function of the step alone (not of earlier draws), so a
    resumed run draws exactly what the uninterrupted run would have."""
    return random.Random(f"{seed}/{step}").sample(range(n), min(size, n))


def ppo_stamp(model: str, adapter_base: str | None, reward_model: str | Path, inputs: list[str | Path],
              heldout_videos: list[str], cfg: RunConfig) -> dict[str, Any]:
    """What decides a PPO run's policy (its checkpoints resume only the same run): the models'
    content, the prompt records' bytes, which of them are used and how they are asked, and
    the settings; more steps, or other checkpoint intervals, continue the same run."""
    settings = {k: v for k, v in asdict(cfg.rlaif.ppo).items()
                if k not in ("steps", "save_every", "keep_checkpoints")}
    return {"step": "ppo", "model": model_content(model, adapter_base),
            "reward_model": model_content(reward_model), "inputs": [file_hash(p) for p in inputs],
            "heldout_videos": sorted(heldout_videos), "ppo": settings,
            "prompts": {"tasks": list(cfg.rlaif.tasks), "count": cfg.rlaif.prompts,
                        "instruction": cfg.generate.instruction},
            "video": asdict(cfg.video), "quantize": cfg.rlaif.quantize}


def train_ppo(
    sft_model: str, reward_model: str, train: list[Record], heldout: list[Record],
    model_out: str | Path, checkpoints: Checkpoints, cfg: PPOConfig, video: VideoConfig,
    prompt: Callable[[Record], str], adapter_base: str | None = None,
    quantize: str | None = None, on_step: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True, verify: VerifyConfig | None = None,
) -> dict[str, Any]:
    """PPO from ``sft_model`` against ``reward_model``; the policy is saved to ``model_out``,
    the run resumes from and saves into ``checkpoints`` (every ``cfg.save_every`` steps, the
    newest ``cfg.keep_checkpoints`` kept, the caller claims them).

    ``adapter_base`` is where the SFT model's own base is (a pipeline step gets it as an input);
    ``on_step`` receives every step's statistics (MLflow logging); with ``verify`` each step
    also reports the Parser-Verifier's pass rate of its samples and the reward model's ranking
    accuracy on them. Under ``torchrun`` every rank calls this with the same arguments and
    samples its share of each step's prompts (:class:`Share`); rank 0 alone saves the policy
    and calls ``on_step``. The checkpoints' stamp
    (:func:`ppo_stamp`) goes into the policy's card with the result, so a retry after a kill
    before ``metrics.json`` completes (:func:`videostar.resume.published_result`).
    """
    model_out = Path(model_out)
    policy, (train, train_frames), (heldout, heldout_frames), skipped = start_policy(
        sft_model, train, heldout, model_out, video, cfg.lora, cfg.seed, adapter_base, quantize, "PPO")
    reward, value = load_reward_and_value(reward_model, adapter_base=sft_model, quantize=quantize,
                                          sft_adapter_base=adapter_base)
    trainer = PPOTrainer(policy, reward_scorer(reward), value, cfg, verify)
    dist.broadcast_parameters(trainer.params + trainer.critic_params)  # rank 0's initial weights
    held_prompts = [prompt(r) for r in heldout]
    resumed = trainer.resume(checkpoints)
    if resumed is not None:
        before = float(trainer.history[0]["heldout_reward_before"]) if trainer.history else float("nan")
    else:
        before = heldout_reward(trainer, held_prompts, heldout_frames, cfg.heldout_samples, cfg.seed)
    started = time.perf_counter()

    def step(k: int) -> dict[str, float]:
        batch = step_batch(len(train), cfg.batch_size, cfg.seed, k)
        share = Share.of(len(batch))
        idx = [batch[j] for j in share.positions]
        return trainer.step([prompt(train[i]) for i in idx], [train_frames[i] for i in idx],
                            [train[i] for i in idx], [row_seed(cfg.seed, f"ppo/{k}/{i}") for i in idx], share)

    main = dist.is_main()
    run_steps(trainer, checkpoints, cfg.steps, step, {"heldout_reward_before": before}, resumed, "ppo",
              on_step if main else None, progress and main)
    after = heldout_reward(trainer, held_prompts, heldout_frames, cfg.heldout_samples, cfg.seed)
    metrics = {**run_metrics(trainer, len(train), len(heldout), before, after, resumed, skipped, started),
               **step_summary(trainer.history, cfg.kl_budget), "world_size": dist.world_size()}
    result = {"step": "ppo", "model": str(model_out), **metrics, "history": trainer.history}
    if main:
        if metrics["kl_within_budget"] is False:
            print(f"ppo: the final KL per response, {metrics['kl_last']:.3f}, is over rlaif.ppo.kl_budget "
                  f"({cfg.kl_budget})", file=sys.stderr)
        save_model(policy, model_out, "lora", {"stage": "ppo", "reward_model": reward_model,
                                               "heldout_reward": after, "result": result,
                                               "fingerprint": stamp_digest(checkpoints.stamp)})
    return result


SUMMARY_STEPS = 5
"""The summary's "last" values are means over this many final steps (one step's are noisy)."""
SUMMARY_KEYS = ("reward", "kl", "response_length", "verifier_pass_rate", "reward_model_auc")


def step_summary(history: list[dict[str, float]], kl_budget: float | None) -> dict[str, Any]:
    """``<key>_first`` and ``<key>_last`` (the mean of the last :data:`SUMMARY_STEPS` steps,
    steps without a value left out) of every per-step diagnostic, and whether ``kl_last`` is
    within ``kl_budget`` (None: no budget). Reward hacking reads as ``reward`` rising while
    ``verifier_pass_rate`` and ``reward_model_auc`` fall."""
    out: dict[str, Any] = {}
    for key in SUMMARY_KEYS:
        values = [h[key] for h in history if key in h]
        finite = [v for v in values[-SUMMARY_STEPS:] if math.isfinite(v)]
        if values:
            out[f"{key}_first"] = values[0]
            out[f"{key}_last"] = float(np.mean(finite)) if finite else float("nan")
    out["kl_budget"] = kl_budget
    within = None if kl_budget is None or "kl_last" not in out else bool(out["kl_last"] <= kl_budget)
    out["kl_within_budget"] = within
    return out
