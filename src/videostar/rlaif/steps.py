"""Each VLM-RLAIF step as one call from paths to paths: what the CLI and the KFP components run.

``preferences`` samples and judges (its folder: ``pairs.jsonl``, ``heldout.jsonl``, the
video split), ``run_reward_model_step`` trains the reward model on those pairs, ``ppo`` aligns the SFT
model against it (or ``grpo`` with the Parser-Verifier's reward, ``rlaif.algorithm``). Prompts
and videos are split once, in ``preferences``: the videos held out from reward training are
the ones PPO's held-out reward (GRPO's pass rate) is measured on.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from pathlib import Path
from typing import Any

from videostar import layout, tracking
from videostar.config import RunConfig
from videostar.data.records import Record, read_records, write_json, write_jsonl
from videostar.errors import ConfigError
from videostar.outputs import clean_save_debris
from videostar.prompts import answer_prompt
from videostar.resume import published_result
from videostar.training import distributed, launch


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
    from videostar.rlaif.preferences import both_orders, label_judge, lmm_judge

    name = cfg.rlaif.judge
    if name == "sft":
        return None
    if name == "labels":
        return label_judge(cfg.verify)
    return both_orders(lmm_judge(load_model(name), cfg.generate))


def rlaif_prompts(records: list[Record], cfg: RunConfig) -> list[Record]:
    """The records RLAIF samples and aligns on: those of ``rlaif.tasks`` (all when empty), the
    first ``rlaif.prompts`` of them."""
    chosen = [r for r in records if not cfg.rlaif.tasks or r.task in cfg.rlaif.tasks]
    if records and not chosen:
        raise ConfigError(f"rlaif.tasks: none of {cfg.rlaif.tasks} is a task of these records "
                          f"(they have: {', '.join(sorted({r.task for r in records}))})")
    return chosen[:cfg.rlaif.prompts]


def preferences(
    model: str, records_path: str | Path, out_dir: str | Path, cfg: RunConfig,
    adapter_base: str | None = None, parent_run: str = "", progress: bool = True,
) -> dict[str, Any]:
    """Narratives, ``rlaif.pairs_per_prompt`` sample pairs per prompt and the judge's verdicts
    -> preference pairs."""
    from videostar.model import load_model
    from videostar.rlaif.preferences import build_preferences

    started = time.perf_counter()
    out_dir = Path(out_dir)
    errors: list[str] = []
    records = rlaif_prompts(read_records(records_path, errors), cfg)
    rm = cfg.rlaif.reward_model
    heldout_videos = split_videos(records, rm.heldout_fraction, rm.seed)
    lm = load_model(model, adapter_base=adapter_base)
    sampling = dataclasses.replace(cfg.generate, temperature=cfg.rlaif.temperature)
    pairs, counts = build_preferences(
        lm, records, sampling, _judge(cfg), cfg.rlaif.num_clips, cfg.video.num_frames,
        cfg.rlaif.frames_per_clip, progress, answer_prompt(cfg.generate.instruction),
        cfg.rlaif.pairs_per_prompt, cfg.video.backend)
    train = [p.to_json() for p in pairs if p.video not in heldout_videos]
    heldout = [p.to_json() for p in pairs if p.video in heldout_videos]
    write_jsonl(out_dir / layout.PAIRS, train)
    write_jsonl(out_dir / layout.HELDOUT, heldout)
    write_json(out_dir / layout.SPLIT, {"heldout_videos": sorted(heldout_videos)})
    metrics = {"step": "preferences", "judge": cfg.rlaif.judge,
               "pairs_per_prompt": cfg.rlaif.pairs_per_prompt, **counts,
               "keep_rate": (counts["kept"] / (counts["prompts"] * cfg.rlaif.pairs_per_prompt)
                             if counts["prompts"] else 0.0),
               "train_pairs": len(train), "heldout_pairs": len(heldout), "input_errors": errors,
               "seconds": round(time.perf_counter() - started, 3)}
    write_json(out_dir / layout.METRICS, metrics)
    tracking.tracker(cfg, parent_run).log_preferences(
        metrics, [out_dir / layout.PAIRS, out_dir / layout.HELDOUT])
    return metrics


def run_reward_model_step(
    model: str, preferences_dir: str | Path, model_out: str | Path, metrics_out: str | Path,
    cfg: RunConfig, adapter_base: str | None = None, parent_run: str = "", progress: bool = True,
    pipeline_run: str = "",
) -> dict[str, Any]:
    """Train the reward model on the pairs, where ``pipeline.reward_model.launcher`` says
    (:func:`videostar.training.launch.run`: here, under ``torchrun``, or as a TrainJob of
    ``pipeline_run``); its held-out pairwise accuracy is the metric. Under ``torchrun`` rank 0
    alone logs and writes.
    """
    step = launch.RewardModelStep(model, preferences_dir, model_out, metrics_out, adapter_base, parent_run)
    return launch.run(step, cfg, lambda: _reward_model_here(step, cfg, progress), pipeline_run)


def _reward_model_here(step: launch.RewardModelStep, cfg: RunConfig, progress: bool) -> dict[str, Any]:
    """The reward model trained in this process (every rank, under torchrun)."""
    from videostar.rlaif.reward_model import read_pairs, train_reward_model

    main = distributed.is_main()
    folder = Path(step.preferences)
    errors: list[str] = []
    train, heldout = (read_pairs(folder / name, errors) for name in (layout.PAIRS, layout.HELDOUT))
    if main:
        clean_save_debris(step.model_out)
    tracker = tracking.tracker(cfg, step.parent_run if main else "")
    with tracker.step_run(layout.RLAIF):
        result = train_reward_model(
            str(step.model), train, heldout, step.model_out, cfg.rlaif.reward_model, cfg.video,
            progress=progress, adapter_base=None if step.base is None else str(step.base),
            quantize=cfg.rlaif.quantize)
    if not main:
        return result
    result["input_errors"] = errors
    write_json(step.metrics_out, result)
    tracker.log_reward_model(result, str(step.model_out))
    return result


def ppo(
    model: str, reward_dir: str | Path, records_path: str | Path, preferences_dir: str | Path,
    model_out: str | Path, metrics_out: str | Path, cfg: RunConfig, adapter_base: str | None = None,
    parent_run: str = "", progress: bool = True, fresh: bool = False, pipeline_run: str = "",
) -> dict[str, Any]:
    """PPO from the SFT model against the reward model, where ``pipeline.ppo.launcher`` says
    (:func:`videostar.training.launch.run`: here, under ``torchrun``, or as a TrainJob of
    ``pipeline_run``): the policy in ``model_out``, ``metrics_out`` (with every step's
    statistics) and the checkpoints beside it (``checkpoints/``). Under ``torchrun`` each rank
    samples its share of a step's prompts and rank 0 alone logs and writes.

    Every step's reward, KL, response length, the verifier's pass rate on the samples and the
    reward model's ranking accuracy on them, entropy, clip fraction and losses go to MLflow as
    they happen.
    """
    step = launch.PPOStep(model, reward_dir, records_path, preferences_dir, model_out,
                          metrics_out, adapter_base, parent_run, fresh)
    return launch.run(step, cfg, lambda: _ppo_here(step, cfg, progress), pipeline_run)


def _ppo_here(step: launch.PPOStep, cfg: RunConfig, progress: bool) -> dict[str, Any]:
    """PPO in this process (every rank, under torchrun)."""
    from videostar.rlaif.ppo import ppo_stamp, train_ppo
    from videostar.training.checkpoints import Checkpoints

    main = distributed.is_main()
    out_dir = Path(step.metrics_out).parent
    adapter_base = None if step.base is None else str(step.base)
    errors: list[str] = []
    records = rlaif_prompts(read_records(step.records, errors), cfg)
    held = set(layout.read_json(step.preferences, layout.SPLIT)["heldout_videos"])
    # Checkpoints resume only the same run (ppo_stamp); a policy it saved before a kill is its result.
    stamp = ppo_stamp(str(step.model), adapter_base, step.reward_model, [step.records], sorted(held), cfg)
    checkpoints = Checkpoints(out_dir / "checkpoints", stamp, cfg.rlaif.ppo.save_every,
                              cfg.rlaif.ppo.keep_checkpoints)
    checkpoints.claim(step.fresh)
    if main:
        clean_save_debris(step.model_out)
    train = [r for r in records if r.video not in held]
    heldout = [r for r in records if r.video in held]
    tracker = tracking.tracker(cfg, step.parent_run if main else "")
    result = published_result(step.model_out, stamp)
    if result is None:
        with tracker.step_run(layout.RLAIF) as run_id:
            result = train_ppo(str(step.model), str(step.reward_model), train, heldout, step.model_out,
                               checkpoints, cfg.rlaif.ppo, cfg.video, answer_prompt(cfg.generate.instruction),
                               adapter_base=adapter_base, quantize=cfg.rlaif.quantize,
                               on_step=tracker.rl_logger(run_id), progress=progress, verify=cfg.verify)
    if not main:
        return result
    result["input_errors"] = errors
    write_json(step.metrics_out, result)
    tracker.log_policy(result, str(step.model_out))
    return result


def grpo(
    model: str, reward_dir: str | Path, records_path: str | Path, preferences_dir: str | Path,
    model_out: str | Path, metrics_out: str | Path, cfg: RunConfig, adapter_base: str | None = None,
    parent_run: str = "", progress: bool = True, fresh: bool = False,
) -> dict[str, Any]:
    """GRPO from the SFT model with the Parser-Verifier's reward (``rlaif.algorithm: grpo``),
    on ppo's inputs and outputs: the policy in ``model_out``, ``metrics_out`` (with every step's
    statistics) and the checkpoints beside it (``checkpoints/``). The reward model is read only
    when ``rlaif.grpo.reward_model_weight`` mixes it in; the preferences' held-out videos are
    where the held-out pass rate is measured, as PPO's held-out reward is.

    Every step's reward, verifier pass rate, KL, response length, entropy, clip fraction, the
    share of groups with one reward throughout and the losses go to MLflow as they happen.
    """
    from videostar.rlaif.grpo import grpo_stamp, train_grpo
    from videostar.training.checkpoints import Checkpoints

    g = cfg.rlaif.grpo
    errors: list[str] = []
    records = rlaif_prompts(read_records(records_path, errors), cfg)
    held = set(layout.read_json(preferences_dir, layout.SPLIT)["heldout_videos"])
    reward = str(reward_dir) if g.reward_model_weight else None
    # Checkpoints resume only the same run (grpo_stamp); a policy it saved before a kill is its result.
    stamp = grpo_stamp(model, adapter_base, reward, [records_path], sorted(held), cfg)
    checkpoints = Checkpoints(Path(metrics_out).parent / "checkpoints", stamp, g.save_every,
                              g.keep_checkpoints)
    checkpoints.claim(fresh)
    clean_save_debris(model_out)
    tracker = tracking.tracker(cfg, parent_run)
    result = published_result(model_out, stamp)
    if result is None:
        with tracker.step_run(layout.RLAIF) as run_id:
            result = train_grpo(
                model, [r for r in records if r.video not in held], [r for r in records if r.video in held],
                model_out, checkpoints, g, cfg.video, cfg.verify, answer_prompt(cfg.generate.instruction),
                reward_model=reward, adapter_base=adapter_base, quantize=cfg.rlaif.quantize,
                on_step=tracker.rl_logger(run_id, "grpo"), progress=progress)
    result["input_errors"] = errors
    write_json(metrics_out, result)
    tracker.log_policy(result, str(model_out), "grpo")
    return result
