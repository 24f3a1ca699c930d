"""GRPO with the Parser-Verifier as the reward: the RL step beside PPO that neither paper's
released code has (DeepSeekMath's group-relative policy optimisation, with a verifiable reward).

Per prompt a group of ``group_size`` responses is sampled; each is rewarded 1 when the
Parser-Verifier passes it against the record's labels (``graph_path`` for STEP records) and 0
otherwise, plus ``reward_model_weight`` x the reward model's score when one is mixed in. The
advantage of a response is its reward normalised within its group, ``(r - mean) / (std + eps)``:
the group is the baseline, so there is no value model to train (or to start from a reward
model that may be wrong). The loss is PPO's clipped surrogate at token level plus
``kl_coef`` x the k3 estimate of KL to the reference (the SFT model: the adapter disabled).

Why this and not TRL's ``GRPOTrainer``: it samples and scores through its own text pipeline and
does not pass video frames through our processors; the sampling, the prompt + response join,
the EOS mask and the checkpoints are :class:`videostar.rlaif.policy.PolicyTrainer`'s, the
surrogate and masked means are :mod:`videostar.rlaif.ppo_math`'s, as PPO's.

Why a binary reward, not the fraction of labels passed: the cycles keep an answer only when
every label passes and the benchmarks score it so, so the reward is exactly the number GRPO is
meant to raise; partial credit would pay an answer that names the object but the wrong action.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from videostar.config import GRPOConfig, RunConfig, VerifyConfig, VideoConfig
from videostar.data.records import Record
from videostar.errors import VideostarError
from videostar.generation import row_seed
from videostar.model import LoadedModel, save_model
from videostar.resume import file_hash, model_content, stamp_digest
from videostar.rlaif.policy import PolicyTrainer, run_metrics, run_steps, start_policy
from videostar.rlaif.ppo import heldout_reward, reward_scorer, step_batch
from videostar.rlaif.ppo_math import entropy_from_logits, logprobs_from_logits, masked_mean, policy_loss
from videostar.training.checkpoints import Checkpoints
from videostar.verify import verify_record

GroupRewardFn = Callable[[list[Record], list[str], list[str], list[np.ndarray]], tuple[Tensor, Tensor]]
"""``reward_fn(records, prompts, responses, frames) -> (rewards [B], verifier passes [B])``."""


def group_advantages(rewards: Tensor, group_size: int, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """Rewards ``[P * G]`` (each prompt's group of ``G`` together) -> ``(advantages [P * G],
    whether each group's rewards were all equal [P])``.

    A group whose responses all scored the same has advantage 0 throughout: it says nothing
    about which response is better (the std is the unbiased one, as TRL's and DeepSeekMath's).
    """
    groups = rewards.float().view(-1, group_size)
    flat = groups.max(dim=1).values == groups.min(dim=1).values
    std = groups.std(dim=1, keepdim=True)
    advantages = (groups - groups.mean(dim=1, keepdim=True)) / (std + eps)
    return torch.where(flat.unsqueeze(1), 0.0, advantages).reshape(-1), flat


def kl_k3(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token KL(pi || pi_ref) by the k3 estimator ``exp(d) - d - 1`` with ``d = log pi_ref -
    log pi``: unbiased on samples of pi, never negative, and low-variance (Schulman's note; the
    GRPO paper's loss term)."""
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1.0


def verifier_reward(cfg: VerifyConfig) -> Callable[[list[Record], list[str]], Tensor]:
    """1.0 for each response the Parser-Verifier passes against its record's labels, else 0.0."""
    def score(records: list[Record], responses: list[str]) -> Tensor:
        return torch.tensor([float(verify_record(r, text, cfg).passed)
                             for r, text in zip(records, responses, strict=True)])
    return score


def mixed_reward(verify: VerifyConfig, reward_fn: Callable[..., Tensor] | None, weight: float
                 ) -> GroupRewardFn:
    """The verifier's 0/1, plus ``weight`` x ``reward_fn(prompts, responses, frames)`` (a reward
    model) when one is given -> ``(rewards, the verifier's 0/1)``."""
    verifier = verifier_reward(verify)

    def reward(records: list[Record], prompts: list[str], responses: list[str],
               frames: list[np.ndarray]) -> tuple[Tensor, Tensor]:
        passed = verifier(records, responses)
        if reward_fn is None or not weight:
            return passed, passed
        return passed + weight * torch.as_tensor(reward_fn(prompts, responses, frames)).float().cpu(), passed
    return reward


class GRPOTrainer(PolicyTrainer):
    """GRPO on a LoRA-wrapped video LMM (``add_lora`` first): group sampling, no value model."""

    cfg: GRPOConfig

    def __init__(self, lm: LoadedModel, reward_fn: GroupRewardFn, cfg: GRPOConfig | None = None) -> None:
        super().__init__(lm, cfg or GRPOConfig())
        self.reward_fn = reward_fn
        self.optimizer = torch.optim.AdamW(self.params, lr=self.cfg.lr, weight_decay=0.0)

    def step(self, records: list[Record], prompts: list[str], frames: list[np.ndarray],
             seeds: list[int] | None = None) -> dict[str, float]:
        """One GRPO iteration: ``group_size`` samples per prompt, group-normalised advantages,
        then ``epochs`` passes of shuffled minibatch updates. With ``seeds`` (one per prompt)
        sample ``j`` of prompt ``i`` draws from ``row_seed(seeds[i], j)``: a prompt's group
        depends on its seed alone, as PPO's rows."""
        started = time.perf_counter()
        cfg, g = self.cfg, self.cfg.group_size
        records = [r for r in records for _ in range(g)]
        prompts = [p for p in prompts for _ in range(g)]
        frames = [f for f in frames for _ in range(g)]
        rows = None if seeds is None else [row_seed(s, f"group/{j}") for s in seeds for j in range(g)]
        with torch.no_grad():
            tokens, mask, _, texts = self.sampled_tokens(prompts, frames, rows)
            rewards, passed = self.reward_fn(records, prompts, texts, frames)
            advantages, flat = group_advantages(rewards, g, cfg.eps)
            inputs, n_prompt = self._joined(prompts, frames, tokens, mask)
            t_len = tokens.shape[1]
            old = logprobs_from_logits(self._logits(inputs, n_prompt, t_len), tokens)
            ref = logprobs_from_logits(self._logits(inputs, n_prompt, t_len, True), tokens)
        advantages = advantages.to(tokens.device)
        self.lm.model.train()
        n = len(prompts)
        stats: dict[str, list[float]] = {"policy_loss": [], "kl_loss": [], "clipfrac": [], "entropy": []}
        for epoch in range(cfg.epochs):
            gen = torch.Generator().manual_seed(row_seed(cfg.seed, f"grpo/{self.step_count}/{epoch}"))
            order = torch.randperm(n, generator=gen).tolist()
            for start in range(0, n, cfg.minibatch_size):
                idx = order[start:start + cfg.minibatch_size]
                mb = torch.tensor(idx, device=tokens.device)
                mb_mask = mask[mb]
                t_mb = max(1, int(mb_mask.sum(dim=1).max()))  # drop columns that are padding everywhere
                mb_mask, mb_tokens = mb_mask[:, :t_mb], tokens[mb, :t_mb]
                mb_inputs, mb_prompt = self._joined([prompts[i] for i in idx], [frames[i] for i in idx],
                                                    mb_tokens, mb_mask)
                logits = self._logits(mb_inputs, mb_prompt, t_mb)
                logprobs = logprobs_from_logits(logits, mb_tokens)
                adv = advantages[mb].unsqueeze(1).expand_as(logprobs)
                pg, clipfrac = policy_loss(logprobs, old[mb, :t_mb], adv, mb_mask, cfg.clip)
                kl = masked_mean(kl_k3(logprobs, ref[mb, :t_mb]), mb_mask)
                loss = pg + cfg.kl_coef * kl
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    stats["entropy"].append(float(entropy_from_logits(logits, mb_mask)))
                for key, value in (("policy_loss", pg), ("kl_loss", kl), ("clipfrac", clipfrac)):
                    stats[key].append(float(value.detach()))
        self.lm.model.eval()
        self.step_count += 1
        record = {
            "step": self.step_count,
            "reward": float(rewards.mean()),
            "verifier_pass_rate": float(passed.mean()),
            # as PPO's: the sampled responses' summed log-ratio to the reference, per response
            "kl": float(((old - ref) * mask).sum(dim=1).mean()),
            "response_length": float(mask.float().sum(dim=1).mean()),
            "zero_variance_groups": float(flat.float().mean()),
            **{k: float(np.mean(v)) for k, v in stats.items()},
            "seconds": round(time.perf_counter() - started, 3),
        }
        self.history.append(record)
        return record


def heldout_pass_rate(trainer: GRPOTrainer, records: list[Record], prompts: list[str],
                      frames: list[np.ndarray], samples: int, seed: int, verify: VerifyConfig) -> float:
    """The verifier's pass rate of sampled responses on held-out prompts (same seed before and
    after): the number that says whether GRPO helped."""
    passed = verifier_reward(verify)
    return heldout_reward(trainer, prompts, frames, samples, seed,
                          lambda rows, texts: passed(records[rows], texts))


def grpo_stamp(model: str, adapter_base: str | None, reward_model: str | Path | None,
               inputs: list[str | Path], heldout_videos: list[str], cfg: RunConfig) -> dict[str, Any]:
    """What decides a GRPO run's policy (its checkpoints resume only the same run): the models'
    content (the reward model's only when it is mixed in), the prompt records' bytes, which of
    them are used and how they are asked, the verifier's and GRPO's settings; more steps, or
    other checkpoint intervals, continue the same run."""
    settings = {k: v for k, v in asdict(cfg.rlaif.grpo).items()
                if k not in ("steps", "save_every", "keep_checkpoints")}
    return {"step": "grpo", "model": model_content(model, adapter_base),
            "reward_model": None if reward_model is None else model_content(reward_model),
            "inputs": [file_hash(p) for p in inputs], "heldout_videos": sorted(heldout_videos),
            "grpo": settings, "verify": asdict(cfg.verify),
            "prompts": {"tasks": list(cfg.rlaif.tasks), "count": cfg.rlaif.prompts,
                        "instruction": cfg.generate.instruction},
            "video": asdict(cfg.video), "quantize": cfg.rlaif.quantize}


def train_grpo(
    sft_model: str, train: list[Record], heldout: list[Record], model_out: str | Path,
    checkpoints: Checkpoints, cfg: GRPOConfig, video: VideoConfig, verify: VerifyConfig,
    prompt: Callable[[Record], str], reward_model: str | None = None, adapter_base: str | None = None,
    quantize: str | None = None, on_step: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """GRPO from ``sft_model`` with the verifier's reward (plus ``cfg.reward_model_weight`` x
    ``reward_model``'s score; with weight 0 no reward model is loaded); the policy is saved to
    ``model_out``, the run resumes from and saves into ``checkpoints`` as :func:`train_ppo`'s."""
    model_out = Path(model_out)
    if cfg.reward_model_weight and not reward_model:
        raise VideostarError("rlaif.grpo.reward_model_weight is set but no reward model was given")
    policy, (train, train_frames), (heldout, heldout_frames), skipped = start_policy(
        sft_model, train, heldout, model_out, video, cfg.lora, cfg.seed, adapter_base, quantize, "GRPO")
    scorer = None
    if cfg.reward_model_weight:
        from videostar.rlaif.reward_model import load_reward_model

        scorer = reward_scorer(load_reward_model(str(reward_model), adapter_base=sft_model,
                                                 quantize=quantize, sft_adapter_base=adapter_base))
    trainer = GRPOTrainer(policy, mixed_reward(verify, scorer, cfg.reward_model_weight), cfg)
    held_prompts = [prompt(r) for r in heldout]
    resumed = trainer.resume(checkpoints)
    if resumed is not None:
        before = float(trainer.history[0]["heldout_reward_before"]) if trainer.history else float("nan")
    else:
        before = heldout_pass_rate(trainer, heldout, held_prompts, heldout_frames, cfg.heldout_samples,
                                   cfg.seed, verify)
    started = time.perf_counter()

    def step(k: int) -> dict[str, float]:
        idx = step_batch(len(train), cfg.batch_size, cfg.seed, k)
        return trainer.step([train[i] for i in idx], [prompt(train[i]) for i in idx],
                            [train_frames[i] for i in idx],
                            [row_seed(cfg.seed, f"grpo/{k}/{i}") for i in idx])

    run_steps(trainer, checkpoints, cfg.steps, step, {"heldout_reward_before": before}, resumed,
              "grpo", on_step, progress)
    after = heldout_pass_rate(trainer, heldout, held_prompts, heldout_frames, cfg.heldout_samples, cfg.seed,
                              verify)
    metrics = run_metrics(trainer, len(train), len(heldout), before, after, resumed, skipped, started)
    metrics["mean_pass_rate_last"] = float(np.mean([h["verifier_pass_rate"] for h in trainer.history[-5:]]))
    result = {"step": "grpo", "model": str(model_out), **metrics, "history": trainer.history}
    save_model(policy, model_out, "lora", {"stage": "grpo", "reward_model": reward_model,
                                           "heldout_reward": after,
                                           "fingerprint": stamp_digest(checkpoints.stamp), "result": result})
    return result
