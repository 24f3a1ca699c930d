"""A whole PPO run: policy, reward and value models from folders, prompts from records.

The policy is the SFT model with a fresh LoRA adapter; the reward model and the value model
share one base (the reward model's adapter loaded twice). Every ``save_every`` steps, and at
the end, a resumable checkpoint is written; a run that finds one continues from it (a retried
pipeline step loses no finished step). Mean reward on held-out prompts is measured before
and after, with the same sampling seed, which is the number that says whether PPO helped.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from videostar.config import PPOConfig, VideoConfig
from videostar.data.records import Record
from videostar.errors import VideostarError
from videostar.model import LoadedModel, add_lora, load_model, save_model
from videostar.train.ppo import STATE_FILE, PPOTrainer
from videostar.train.reward import RewardModel, load_reward_and_value
from videostar.train.sft import decode_batch


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


def _latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob(f"step-*/{STATE_FILE}"), key=lambda p: int(p.parent.name[5:]))
    return found[-1].parent if found else None


def train_ppo(
    sft_model: str, reward_model: str, train: list[Record], heldout: list[Record],
    model_out: str | Path, out: str | Path, cfg: PPOConfig, video: VideoConfig,
    prompt: Callable[[Record], str], base: str | None = None,
    quantize: str | None = None, on_step: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """PPO from ``sft_model`` against ``reward_model``; the policy is saved to ``model_out``,
    checkpoints under ``out/checkpoints``.

    ``base`` is where the SFT model's own base is (a pipeline step gets it as an input);
    ``on_step`` receives every step's statistics (MLflow logging).
    """
    out, model_out = Path(out), Path(model_out)
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
    policy: LoadedModel = load_model(sft_model, base=base, quantize=quantize)
    policy.base = sft_model  # the PPO adapter sits on exactly this model
    policy = add_lora(policy, cfg.lora)
    reward, value = load_reward_and_value(reward_model, base=sft_model, quantize=quantize,
                                          model_base=base)
    trainer = PPOTrainer(policy, reward_scorer(reward), value, cfg)
    held_prompts = [prompt(r) for r in heldout]
    checkpoints = out / "checkpoints"
    resume = _latest_checkpoint(checkpoints)
    if resume is not None:
        trainer.load_checkpoint(resume)
        before = float(trainer.history[0]["heldout_reward_before"]) if trainer.history else float("nan")
    else:
        before = heldout_reward(trainer, held_prompts, heldout_frames, cfg.heldout_samples, cfg.seed)
    order = list(range(len(train)))
    started = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=trainer.step_count, desc="ppo", unit="step",
               disable=not progress)
    while trainer.step_count < cfg.steps:
        k = trainer.step_count
        random.Random(cfg.seed + k).shuffle(order)
        idx = order[:cfg.batch_size]
        record = trainer.step([prompt(train[i]) for i in idx], [train_frames[i] for i in idx])
        if k == 0:
            record["heldout_reward_before"] = before
        if on_step is not None:
            on_step(record)
        bar.update(1)
        bar.set_postfix(reward=f"{record['reward']:.3f}", kl=f"{record['kl']:.3f}")
        if cfg.save_every and trainer.step_count % cfg.save_every == 0:
            _save(trainer, checkpoints, trainer.step_count)
    bar.close()
    _save(trainer, checkpoints, trainer.step_count)
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
        "resumed_from": resume.name if resume is not None else None,
        "skipped_videos": skipped,
        "seconds": round(time.perf_counter() - started, 3),
    }
    save_model(policy, model_out, "lora", {"stage": "ppo", "reward_model": reward_model,
                                               "heldout_reward": after})
    return {"step": "ppo", "model": str(model_out), **metrics, "history": trainer.history}


def _save(trainer: PPOTrainer, folder: Path, step: int) -> None:
    """A checkpoint under ``step-N``, written beside and renamed into place (never half-written)."""
    final = folder / f"step-{step}"
    if (final / STATE_FILE).exists():
        return
    tmp = folder / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_checkpoint(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
