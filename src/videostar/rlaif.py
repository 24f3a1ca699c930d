"""Each VLM-RLAIF step as one call from paths to paths: what the CLI and the KFP components run.

``preferences`` samples and judges (its folder: ``pairs.jsonl``, ``heldout.jsonl``, the
video split), ``reward_model`` trains the reward model on those pairs, ``ppo`` aligns the SFT
model against it. Prompts and videos are split once, in ``preferences``: the videos held out
from reward training are the ones PPO's held-out reward is measured on.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from pathlib import Path
from typing import Any

from videostar import tracking
from videostar.config import RunConfig
from videostar.data.records import Record, read_records, read_rows, write_json, write_jsonl

SPLIT_FILE = "split.json"


def split_videos(records: list[Record], fraction: float, seed: int) -> set[str]:
    """The held-out videos: a seeded ``fraction`` of the distinct videos, at least one when
    there are two or more (so every run has a held-out measurement)."""
    videos = sorted({r.video for r in records})
    random.Random(seed).shuffle(videos)
    count = min(len(videos) - 1, max(1, math.ceil(fraction * len(videos)))) if len(videos) > 1 else 0
    return set(videos[:count])


def _judge(cfg: RunConfig) -> Any:
    """The configured pair judge: the SFT model itself (None: the default), the labels, or a
    checkpoint of its own."""
    from videostar.model import load_model
    from videostar.train.preferences import both_orders, label_judge, lmm_judge

    name = cfg.rlaif.judge
    if name == "sft":
        return None
    if name == "labels":
        return label_judge(cfg.verify)
    return both_orders(lmm_judge(load_model(name), cfg.generate))


def preferences(
    model: str, records_path: str | Path, out_dir: str | Path, cfg: RunConfig,
    base: str | None = None, parent_run: str = "", progress: bool = True,
) -> dict[str, Any]:
    """Narratives, two samples per prompt and the judge's verdicts -> preference pairs."""
    from videostar.model import load_model
    from videostar.star.generate import answer_prompt
    from videostar.train.preferences import build_preferences

    started = time.perf_counter()
    out_dir = Path(out_dir)
    errors: list[str] = []
    records = read_records(records_path, errors)[:cfg.rlaif.prompts]
    heldout_videos = split_videos(records, cfg.rlaif.reward.heldout_fraction, cfg.rlaif.reward.seed)
    lm = load_model(model, base=base)
    sampling = dataclasses.replace(cfg.generate, temperature=cfg.rlaif.temperature)
    pairs, counts = build_preferences(
        lm, records, sampling, _judge(cfg), cfg.rlaif.num_clips, cfg.video.num_frames,
        cfg.rlaif.frames_per_clip, progress, answer_prompt(cfg.generate.instruction))
    train = [p.to_json() for p in pairs if p.video not in heldout_videos]
    heldout = [p.to_json() for p in pairs if p.video in heldout_videos]
    write_jsonl(out_dir / "pairs.jsonl", train)
    write_jsonl(out_dir / "heldout.jsonl", heldout)
    write_json(out_dir / SPLIT_FILE, {"heldout_videos": sorted(heldout_videos)})
    metrics = {"step": "preferences", "judge": cfg.rlaif.judge, **counts,
               "keep_rate": counts["kept"] / counts["prompts"] if counts["prompts"] else 0.0,
               "train_pairs": len(train), "heldout_pairs": len(heldout), "input_errors": errors,
               "seconds": round(time.perf_counter() - started, 3)}
    write_json(out_dir / "metrics.json", metrics)
    if tracking.enabled(cfg) and parent_run:
        tracking.log_preferences(cfg, parent_run, metrics,
                                 [out_dir / "pairs.jsonl", out_dir / "heldout.jsonl"])
    return metrics


def reward_model(
    model: str, preferences_dir: str | Path, model_out: str | Path, metrics_out: str | Path,
    cfg: RunConfig, base: str | None = None, parent_run: str = "", progress: bool = True,
) -> dict[str, Any]:
    """Train the reward model on the pairs; its held-out pairwise accuracy is the metric."""
    from videostar.train.reward import pairs_from_rows, train_reward_model

    folder, rc = Path(preferences_dir), cfg.rlaif.reward
    with tracking.step_run(cfg, parent_run, tracking.RLAIF, _tags(cfg)):
        result = train_reward_model(
            model, pairs_from_rows(read_rows(folder / "pairs.jsonl")),
            pairs_from_rows(read_rows(folder / "heldout.jsonl")), model_out, rc.lora, cfg.video,
            lr=rc.lr, epochs=rc.epochs, batch_size=rc.batch_size, seed=rc.seed,
            center_coef=rc.center_coef, progress=progress, model_base=base,
            quantize=cfg.rlaif.quantize)
    write_json(metrics_out, result)
    if tracking.enabled(cfg) and parent_run:
        tracking.log_reward_model(cfg, parent_run, result, str(model_out))
    return result


def ppo(
    model: str, reward_dir: str | Path, records_path: str | Path, preferences_dir: str | Path,
    model_out: str | Path, out_dir: str | Path, cfg: RunConfig, base: str | None = None,
    parent_run: str = "", progress: bool = True,
) -> dict[str, Any]:
    """PPO from the SFT model against the reward model: the policy in ``model_out``, the
    checkpoints and ``metrics.json`` (with every step's statistics) in ``out_dir``.

    Every step's reward, KL, entropy, clip fraction and losses go to MLflow as they happen.
    """
    import json

    from videostar.star.generate import answer_prompt
    from videostar.train.align import train_ppo

    out_dir = Path(out_dir)
    errors: list[str] = []
    records = read_records(records_path, errors)[:cfg.rlaif.prompts]
    split = json.loads((Path(preferences_dir) / SPLIT_FILE).read_text())
    held = set(split["heldout_videos"])
    train = [r for r in records if r.video not in held]
    heldout = [r for r in records if r.video in held]
    with tracking.step_run(cfg, parent_run, tracking.RLAIF, _tags(cfg)) as run_id:
        on_step = tracking.ppo_logger(cfg, run_id) if run_id else None
        result = train_ppo(model, str(reward_dir), train, heldout, model_out, out_dir, cfg.rlaif.ppo,
                           cfg.video, answer_prompt(cfg.generate.instruction), base=base,
                           quantize=cfg.rlaif.quantize, on_step=on_step, progress=progress)
    result["input_errors"] = errors
    write_json(out_dir / "metrics.json", result)
    if tracking.enabled(cfg) and parent_run:
        tracking.log_ppo(cfg, parent_run, result, str(model_out))
    return result


def _tags(cfg: RunConfig) -> dict[str, str]:
    return {"dataset": cfg.pipeline.dataset, "base_model": cfg.pipeline.base_model,
            "stage": "rlaif"}
