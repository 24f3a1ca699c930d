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
from videostar.config import EvalSuite, RunConfig
from videostar.data.records import Record, read_records, read_rows, write_json, write_jsonl
from videostar.export import verdict_examples
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


def conclude(
    cycle: int, verification_dir: str | Path, rationale_dirs: list[str | Path], sft_dir: str | Path,
    model_dir: str | Path, history: list[dict[str, Any]], cfg: RunConfig, parent_run: str = "",
    evaluation_dir: str | Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """End a cycle: its summary (with its evaluation scores) and decision, logged to MLflow and
    the store when tracking is on."""
    scores = {}
    if evaluation_dir is not None:
        scores = json.loads((Path(evaluation_dir) / "scores.json").read_text())["scores"]
    shards = [json.loads((Path(d) / "metrics.json").read_text()) for d in rationale_dirs]
    summary = cycle_summary(cycle, json.loads((Path(verification_dir) / "metrics.json").read_text()),
                            shards) | scores
    decision = decide([*history, summary], cfg.decide)
    if tracking.enabled(cfg) and parent_run:
        files = [str(Path(d) / "verified.jsonl") for d in (verification_dir, *rationale_dirs)]
        sft_metrics = json.loads((Path(sft_dir) / "metrics.json").read_text())
        outputs = [("answer", Path(verification_dir)),
                   *(("rationalization", Path(d)) for d in rationale_dirs)]
        tracking.log_examples(cfg, parent_run, cycle, verdict_examples(outputs, cycle))
        tracking.log_cycle(cfg, parent_run, summary, sft_metrics, files, str(model_dir),
                           [*history, summary], _run_tags(cfg))
        if not decision["continue"] and not cfg.rlaif.enabled:  # else the RLAIF stage closes it
            tracking.finish(cfg, parent_run)
    return summary, decision


def evaluate_suite(lm: Any, suite: EvalSuite, out_dir: str | Path, cfg: RunConfig,
                   progress: bool = True) -> dict[str, Any]:
    """Run one benchmark suite on a loaded model; writes ``report.json`` into ``out_dir``."""
    import dataclasses

    gen = dataclasses.replace(cfg.generate, temperature=cfg.evaluation.temperature,
                              max_new_tokens=cfg.evaluation.max_new_tokens)
    d, limit = suite.data, cfg.evaluation.limit
    if suite.name == "tempcompass":
        from videostar.eval.tempcompass import evaluate_tempcompass

        return evaluate_tempcompass(lm, d["data"], out_dir, gen, cfg.video, video_dir=d.get("videos"),
                                    limit=limit, progress=progress)
    if suite.name == "kinetics700":
        from videostar.eval.kinetics_qa import evaluate_kinetics

        return evaluate_kinetics(lm, d["csv"], d["videos"], out_dir, gen, cfg.video, cfg.verify,
                                 templates=cfg.templates, split=suite.split, limit=limit,
                                 progress=progress)
    from videostar.eval.finediving import evaluate_finediving

    return evaluate_finediving(lm, d["root"], d["coarse"], d["fine"], d["split_keys"], d["subactions"],
                               out_dir, gen, cfg.video, cfg.verify, templates=cfg.templates,
                               limit=limit, progress=progress)


def evaluate(model: str, out_dir: str | Path, cfg: RunConfig, cycle: int, base: str | None = None,
             parent_run: str = "", progress: bool = True, stage: str = "cycle") -> dict[str, float]:
    """Every configured suite on one model (cycle -1: the base model, the baseline; stage
    ``rlaif``: the PPO policy after the cycles).

    Returns the suites' headline numbers as ``eval.<suite>.<metric>``; they join the cycle's
    summary, so ``decide.metric`` can use them, and go to MLflow when tracking is on.
    """
    from videostar.model import load_model

    lm = load_model(model, base=base)
    scores: dict[str, float] = {}
    for suite in cfg.evaluation.suites:
        report = evaluate_suite(lm, suite, Path(out_dir) / suite.name, cfg, progress)
        scores |= {f"eval.{suite.name}.{k}": float(v) for k, v in report["summary"].items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
    write_json(Path(out_dir) / "scores.json", {"cycle": cycle, "stage": stage, "scores": scores})
    if tracking.enabled(cfg) and parent_run:
        tracking.log_scores(cfg, parent_run, tracking.RLAIF if stage == tracking.RLAIF else cycle,
                            scores)
    return scores


def _run_tags(cfg: RunConfig) -> dict[str, str]:
    return {"dataset": cfg.pipeline.dataset, "base_model": cfg.pipeline.base_model}
