"""Each Video-STaR step as one call from paths to paths: what the CLI and the KFP components run.

A step reads its inputs, calls the library, and writes its outputs plus a ``metrics.json`` into
one folder. Sharded steps take ``shard``/``num_shards`` and work on every ``num_shards``-th record,
so shards never overlap and their union is the whole dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from videostar import tracking
from videostar.config import RunConfig
from videostar.data.records import Record, read_records, read_rows, write_json, write_jsonl
from videostar.star.cycle import cycle_summary, decide
from videostar.star.verify import verify_rows


def shard(records: list[Record], index: int, count: int) -> list[Record]:
    if not 0 <= index < count:
        raise ValueError(f"shard {index} is not in 0..{count - 1}")
    return records[index::count]


def generate(
    model: str, records_path: str | Path, out_dir: str | Path, cfg: RunConfig,
    base: str | None = None, index: int = 0, count: int = 1, progress: bool = True,
) -> dict[str, Any]:
    """Answer the questions of one shard into ``answers.jsonl``."""
    from videostar.model import load_model
    from videostar.star.generate import answer_prompt, generate_answers

    out_dir = Path(out_dir)
    errors: list[str] = []
    records = shard(read_records(records_path, errors), index, count)
    metrics = generate_answers(load_model(model, base=base), records, out_dir / "answers.jsonl",
                               cfg.generate, cfg.video, answer_prompt(cfg.generate.instruction),
                               progress=progress)
    metrics |= {"input_errors": errors, "shard": index, "num_shards": count}
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def verify(answers_paths: list[str | Path], out_dir: str | Path, cfg: RunConfig) -> dict[str, Any]:
    """Verify the answers of all shards into ``verified.jsonl`` / ``rejected.jsonl``."""
    out_dir = Path(out_dir)
    result = verify_rows([row for p in answers_paths for row in read_rows(p)], cfg.verify)
    write_jsonl(out_dir / "verified.jsonl", result.passed)
    write_jsonl(out_dir / "rejected.jsonl", result.rejected)
    write_json(out_dir / "metrics.json", result.metrics)
    return result.metrics


def rationalize(
    model: str, rejected_path: str | Path, out_dir: str | Path, cfg: RunConfig,
    base: str | None = None, index: int = 0, count: int = 1, progress: bool = True,
) -> dict[str, Any]:
    """Rationalize one shard of the rejected records; the verified rationales are kept."""
    from videostar.model import load_model
    from videostar.star.rationalize import rationalize as run

    out_dir = Path(out_dir)
    errors: list[str] = []
    records = shard(read_records(rejected_path, errors), index, count)
    metrics = run(load_model(model, base=base), records, out_dir, cfg, progress)
    metrics |= {"input_errors": errors, "shard": index, "num_shards": count}
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def start(cfg: RunConfig, pipeline_run: str) -> str:
    """Check MLflow and the store, and open the run's parent MLflow run ('' when tracking is off)."""
    return tracking.start_run(cfg, pipeline_run)


def sft(
    base: str, data_paths: list[str | Path], model_out: str | Path, metrics_out: str | Path,
    cfg: RunConfig, progress: bool = True, parent_run: str = "", cycle: int = 0,
) -> dict[str, Any]:
    """Instruction-tune ``base`` on all verified answers and rationales of a cycle.

    With tracking on, the cycle's MLflow run is active meanwhile and records system metrics.
    """
    from videostar.train.sft import sft as run

    with tracking.step_run(cfg, parent_run, cycle, _run_tags(cfg)):
        metrics = run(base, data_paths, model_out, cfg.sft, cfg.video, cfg.generate.instruction,
                      progress)
    write_json(metrics_out, metrics)
    return metrics


def summarize(
    cycle: int, verify_metrics: str | Path, rationalize_metrics: list[str | Path],
    history: list[dict[str, Any]], cfg: RunConfig,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """This cycle's yields appended to the history, and the decision on another cycle."""
    shards = [json.loads(Path(p).read_text()) for p in rationalize_metrics]
    summary = cycle_summary(cycle, json.loads(Path(verify_metrics).read_text()), shards)
    return summary, decide([*history, summary], cfg.decide)


def conclude(
    cycle: int, verification_dir: str | Path, rationale_dirs: list[str | Path], sft_dir: str | Path,
    model_dir: str | Path, history: list[dict[str, Any]], cfg: RunConfig, parent_run: str = "",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """End a cycle: its summary and decision, logged to MLflow and the store when tracking is on."""
    summary, decision = summarize(cycle, Path(verification_dir) / "metrics.json",
                                  [Path(d) / "metrics.json" for d in rationale_dirs], history, cfg)
    if tracking.enabled(cfg) and parent_run:
        files = [str(Path(d) / "verified.jsonl") for d in (verification_dir, *rationale_dirs)]
        sft_metrics = json.loads((Path(sft_dir) / "metrics.json").read_text())
        tracking.log_cycle(cfg, parent_run, summary, sft_metrics, files, str(model_dir),
                           [*history, summary], _run_tags(cfg))
        if not decision["continue"]:
            tracking.finish(cfg, parent_run)
    return summary, decision


def _run_tags(cfg: RunConfig) -> dict[str, str]:
    return {"dataset": cfg.pipeline.dataset, "base_model": cfg.pipeline.base_model}
