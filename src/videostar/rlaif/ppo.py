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

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from videostar.config import PPOConfig, RunConfig, VideoConfig
from videostar.data.records import Record
from videostar.errors import VideostarError
from videostar.model import LoadedModel, add_lora, disable_dropout, load_model, save_model
from videostar.resume import file_hash, model_content, stamp_digest
from videostar.rlaif.ppo_math import (
    entropy_from_logits,
    gae,
    kl_penalty,
    logprobs_from_logits,
    policy_loss,
    token_rewards,
    value_loss,
    whiten,
)
from videostar.rlaif.reward_model import RewardModel, load_reward_and_value
from videostar.training.checkpoints import Checkpoints, trainable
from videostar.training.loop import decode_batch
from videostar.training.state import restoring

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


class PPOTrainer:
    """PPO on a LoRA-wrapped video LMM (``add_lora`` first) with a separate value model."""

    def __init__(
        self, lm: LoadedModel, reward_fn: RewardFn, critic: RewardModel, cfg: PPOConfig | None = None,
    ) -> None:
        if not hasattr(lm.model, "disable_adapter"):
            raise ValueError("PPOTrainer needs a LoRA-wrapped policy (videostar.model.add_lora)")
        self.lm, self.reward_fn, self.critic, self.cfg = lm, reward_fn, critic, cfg or PPOConfig()
        # The rollout's logprobs and values come from deterministic passes; dropout in the
        # update passes would move the ratio before any learning (as TRL and OpenRLHF do).
        disable_dropout(lm.model)
        disable_dropout(critic)
        critic.activate()
        self.params = [p for p in lm.model.parameters() if p.requires_grad]
        self.critic_params = [p for p in critic.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params + self.critic_params, lr=self.cfg.lr,
                                           weight_decay=0.0)
        self.step_count = 0
        self.history: list[dict[str, float]] = []
        self.eos_ids = lm.eos_token_ids
        self.sampling = lm.generation_config(self.cfg.temperature, self.cfg.max_new_tokens)

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
        """Policy (or reference) logits predicting each response token (position ``i - 1``
        predicts token ``i``), divided by the sampling temperature: the distribution the
        responses were drawn from, so the ratio and KL compare like with like."""
        if reference:
            with self.lm.model.disable_adapter():
                out = self.lm.model(**inputs, use_cache=False)
        else:
            out = self.lm.model(**inputs, use_cache=False)
        return out.logits[:, n_prompt - 1:n_prompt - 1 + t_len] / self.cfg.temperature

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
        out = self.lm.model.generate(**inputs, generation_config=self.sampling)
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

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        """What a checkpoint holds of the models: the policy's adapter, the value model's
        adapter and head."""
        return {**{f"policy.{k}": p for k, p in trainable(self.lm.model).items()},
                **{f"value.{k}": p for k, p in trainable(self.critic).items()}}

    def save(self, checkpoints: Checkpoints) -> Path:
        """A checkpoint of this step: the trainable weights, optimizer, RNG and history."""
        return checkpoints.save(self.step_count, self.trainable(), self.optimizer, None,
                                {"history": self.history})

    def resume(self, checkpoints: Checkpoints) -> int | None:
        """Continue from the newest checkpoint that reads back; returns its step (None: none)."""
        def load(path: Path) -> dict[str, Any]:
            meta = checkpoints.load(path, self.trainable(), self.optimizer, None)
            with restoring(path):
                return {"step": int(meta["step"]), "history": list(meta["history"])}

        meta = checkpoints.resume(load)
        if meta is None:
            return None
        self.step_count, self.history = meta["step"], meta["history"]
        return self.step_count


def reward_scorer(rm: RewardModel, batch_size: int = 8) -> Callable[..., torch.Tensor]:
    """The reward model as PPO's ``reward_fn``."""
    def score(prompts: list[str], responses: list[str], frames: list[np.ndarray]) -> torch.Tensor:
        return rm.score(prompts, responses, frames, batch_size)
    return score


def heldout_reward(trainer: PPOTrainer, prompts: list[str], frames: list[np.ndarray],
                   samples: int, seed: int) -> float:
    """Mean reward of sampled responses on held-out prompts (same seed before and after)."""
    if not prompts:
        return float("nan")
    torch.manual_seed(seed)
    scores = []
    for _ in range(samples):
        for i in range(0, len(prompts), trainer.cfg.batch_size):
            sl = slice(i, i + trainer.cfg.batch_size)
            _, texts = trainer.sample(prompts[sl], frames[sl])
            scores.append(trainer.reward_fn(prompts[sl], texts, frames[sl]))
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
    progress: bool = True,
) -> dict[str, Any]:
    """PPO from ``sft_model`` against ``reward_model``; the policy is saved to ``model_out``,
    the run resumes from and saves into ``checkpoints`` (every ``cfg.save_every`` steps, the
    newest ``cfg.keep_checkpoints`` kept, the caller claims them).

    ``adapter_base`` is where the SFT model's own base is (a pipeline step gets it as an input);
    ``on_step`` receives every step's statistics (MLflow logging). The checkpoints' stamp
    (:func:`ppo_stamp`) goes into the policy's card with the result, so a retry after a kill
    before ``metrics.json`` completes (:func:`videostar.resume.published_result`).
    """
    model_out = Path(model_out)
    if model_out.exists():
        raise VideostarError(f"{model_out}: already exists; refusing to overwrite a saved model")
    skipped: list[dict[str, str]] = []
    train, train_frames = decode_batch(train, video, skipped)
    heldout, heldout_frames = decode_batch(heldout, video, skipped)
    if not train:
        raise VideostarError("no readable training prompts for PPO")
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    policy: LoadedModel = load_model(sft_model, adapter_base=adapter_base, quantize=quantize, fold=True)
    policy.tuned_from = sft_model  # the PPO adapter sits on exactly this model
    policy = add_lora(policy, cfg.lora)
    reward, value = load_reward_and_value(reward_model, adapter_base=sft_model, quantize=quantize,
                                          sft_adapter_base=adapter_base)
    trainer = PPOTrainer(policy, reward_scorer(reward), value, cfg)
    held_prompts = [prompt(r) for r in heldout]
    resumed = saved = trainer.resume(checkpoints)  # saved: the step whose checkpoint is on disk
    if resumed is not None:
        before = float(trainer.history[0]["heldout_reward_before"]) if trainer.history else float("nan")
    else:
        before = heldout_reward(trainer, held_prompts, heldout_frames, cfg.heldout_samples, cfg.seed)
    started = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=trainer.step_count, desc="ppo", unit="step",
               disable=not progress)
    while trainer.step_count < cfg.steps:
        k = trainer.step_count
        idx = step_batch(len(train), cfg.batch_size, cfg.seed, k)
        record = trainer.step([prompt(train[i]) for i in idx], [train_frames[i] for i in idx])
        if k == 0:
            record["heldout_reward_before"] = before
        if on_step is not None:
            on_step(record)
        bar.update(1)
        bar.set_postfix(reward=f"{record['reward']:.3f}", kl=f"{record['kl']:.3f}")
        if checkpoints.due(trainer.step_count, cfg.steps):
            trainer.save(checkpoints)
            saved = trainer.step_count
    bar.close()
    if saved != trainer.step_count:  # the last step's, so a kill in the held-out pass loses none
        trainer.save(checkpoints)
    after = heldout_reward(trainer, held_prompts, heldout_frames, cfg.heldout_samples, cfg.seed)
    metrics = {
        "steps": trainer.step_count,
        "prompts": len(train),
        "heldout_prompts": len(heldout),
        "heldout_reward_before": before,
        "heldout_reward_after": after,
        "reward_gain": after - before,
        "final_kl": trainer.history[-1]["kl"],
        "mean_reward_last": float(np.mean([h["reward"] for h in trainer.history[-5:]])),
        "resumed_from": resumed,
        "video_errors": skipped,
        "seconds": round(time.perf_counter() - started, 3),
    }
    result = {"step": "ppo", "model": str(model_out), **metrics, "history": trainer.history}
    save_model(policy, model_out, "lora", {"stage": "ppo", "reward_model": reward_model,
                                           "heldout_reward": after,
                                           "fingerprint": stamp_digest(checkpoints.stamp), "result": result})
    return result
