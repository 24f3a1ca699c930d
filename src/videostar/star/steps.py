"""Each Video-STaR step as one call from paths to paths: what the CLI and the KFP components run.

A step reads its inputs, calls the library, and writes its outputs plus a ``metrics.json`` into
one folder (file names: :mod:`videostar.layout`). Sharded steps take ``shard``/``num_shards`` and
work on every ``num_shards``-th record, so shards never overlap and their union is the whole
dataset. Steps log through a :class:`~videostar.tracking.Tracker` for the pipeline run's parent
MLflow run (``parent_run``; none when tracking is off).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from videostar import layout, tracking
from videostar.config import EvalSuite, RunConfig
from videostar.data.records import Record, read_records, write_json, write_jsonl
from videostar.errors import ConfigError
from videostar.outputs import clean_save_debris
from videostar.resume import claim, file_hash, model_content
from videostar.star.decide import decide as decide_next
from videostar.star.decide import summarize_cycle
from videostar.training import distributed, launch
from videostar.verify import verify_rows


def shard(records: list[Record], index: int, count: int) -> list[Record]:
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard: {index} of {count} shards (allowed: num_shards >= 1, "
                          f"shard in 0..num_shards-1)")
    return records[index::count]


def start(cfg: RunConfig, pipeline_run: str, out_dir: str | Path | None = None) -> str:
    """Check MLflow and the store, open the run's parent MLflow run ('' when tracking is off),
    and write the empty cycle history the first cycle's decision starts from."""
    if out_dir is not None:
        write_json(Path(out_dir) / layout.HISTORY, [])
    return tracking.start_run(cfg, pipeline_run)


def generation_stamp(step: str, model: str, adapter_base: str | None, inputs: list[str | Path],
                     cfg: RunConfig, index: int, count: int, **more: Any) -> dict[str, Any]:
    """What decides a generating step's rows: the model's content, input bytes, shard and
    settings (the batch size only changes how fast: rows are sampled each with its own seed)."""
    gen = {k: v for k, v in dataclasses.asdict(cfg.generate).items() if k != "batch_size"}
    return {"step": step, "model": model_content(model, adapter_base),
            "inputs": [file_hash(p) for p in inputs], "shard": [index, count], "generate": gen,
            "video": dataclasses.asdict(cfg.video), **more}


def generate(
    model: str, records_path: str | Path, out_dir: str | Path, cfg: RunConfig,
    adapter_base: str | None = None, index: int = 0, count: int = 1, progress: bool = True,
    fresh: bool = False,
) -> dict[str, Any]:
    """Answer the questions of one shard into ``answers.jsonl``; a rerun into the same folder
    resumes the same work only (:func:`videostar.resume.claim`)."""
    from videostar.generation import generate_answers, load_generator
    from videostar.prompts import answer_prompt

    out_dir = Path(out_dir)
    errors: list[str] = []
    records = shard(read_records(records_path, errors), index, count)
    claim(out_dir, generation_stamp("generate", model, adapter_base, [records_path], cfg, index, count),
          (layout.ANSWERS,), fresh)
    metrics = generate_answers(load_generator(model, cfg.generate, adapter_base), records,
                               out_dir / layout.ANSWERS, cfg.generate, cfg.video,
                               answer_prompt(cfg.generate.instruction), progress=progress)
    metrics |= {"input_errors": errors, "shard": index, "num_shards": count}
    write_json(out_dir / layout.METRICS, metrics)
    return metrics


def verify(answers_paths: list[str | Path], out_dir: str | Path, cfg: RunConfig, fresh: bool = False
           ) -> dict[str, Any]:
    """Verify the answers of all shards into ``verified.jsonl`` / ``rejected.jsonl``.

    An id answered in two shards is verified once (the first row wins; the others are bad rows).
    """
    out_dir = Path(out_dir)
    errors: list[str] = []
    records = read_records(answers_paths, errors)
    claim(out_dir, {"step": "verify", "inputs": [file_hash(p) for p in answers_paths],
                    "verify": dataclasses.asdict(cfg.verify)},
          (layout.VERIFIED, layout.REJECTED), fresh)
    result = verify_rows([r.to_json() for r in records], cfg.verify)
    result.metrics["input_errors"] = errors
    write_jsonl(out_dir / layout.VERIFIED, result.passed)
    write_jsonl(out_dir / layout.REJECTED, result.rejected)
    write_json(out_dir / layout.METRICS, result.metrics)
    return result.metrics


def rationalize(
    model: str, rejected_path: str | Path, out_dir: str | Path, cfg: RunConfig,
    adapter_base: str | None = None, index: int = 0, count: int = 1, progress: bool = True,
    fresh: bool = False,
) -> dict[str, Any]:
    """Rationalize one shard of the rejected records; the verified rationales are kept."""
    from videostar.generation import load_generator
    from videostar.star.rationalize import rationalize as run

    out_dir = Path(out_dir)
    errors: list[str] = []
    records = shard(read_records(rejected_path, errors), index, count)
    stamp = generation_stamp("rationalize", model, adapter_base, [rejected_path], cfg, index, count,
                             hint=cfg.rationalize.hint, verify=dataclasses.asdict(cfg.verify))
    claim(out_dir, stamp, (layout.RATIONALES, layout.VERIFIED, layout.REJECTED), fresh)
    metrics = run(load_generator(model, cfg.generate, adapter_base), records, out_dir, cfg, progress)
    metrics |= {"input_errors": errors, "shard": index, "num_shards": count}
    write_json(out_dir / layout.METRICS, metrics)
    return metrics


def run_sft_step(
    base_model: str, data_paths: list[str | Path], model_out: str | Path, metrics_out: str | Path,
    cfg: RunConfig, progress: bool = True, parent_run: str = "", cycle: int = 0, pipeline_run: str = "",
) -> dict[str, Any]:
    """Instruction-tune ``base_model`` on all verified answers and rationales of a cycle, where
    ``pipeline.sft.launcher`` says (:func:`videostar.training.launch.run`: here, under
    ``torchrun``, or as a TrainJob of ``pipeline_run``).

    With tracking on, the cycle's MLflow run is active meanwhile and records system metrics;
    under ``torchrun`` rank 0 alone logs and writes the metrics.
    """
    step = launch.SftStep(base_model, data_paths, model_out, metrics_out, parent_run, cycle)
    return launch.run(step, cfg, lambda: _sft_here(step, cfg, progress), pipeline_run)


def _sft_here(step: launch.SftStep, cfg: RunConfig, progress: bool) -> dict[str, Any]:
    """The SFT step trained in this process (every rank, under torchrun)."""
    from videostar.star.sft import train_sft

    main = distributed.is_main()
    if main:
        clean_save_debris(step.model_out)
    with tracking.tracker(cfg, step.parent_run if main else "").step_run(step.cycle):
        metrics = train_sft(str(step.base), list(step.data), step.model_out, cfg.sft, cfg.video,
                        cfg.generate.instruction, progress)
    if main:
        write_json(step.metrics_out, metrics)
    return metrics


def decide(
    cycle: int, verification_dir: str | Path, rationale_dirs: list[str | Path], sft_dir: str | Path,
    model_dir: str | Path, history: list[dict[str, Any]], cfg: RunConfig, parent_run: str = "",
    evaluation_dir: str | Path | None = None, handed_on: str | Path | None = None,
    chosen_out: str | Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """End a cycle: its summary (with its evaluation scores) and the decision on another cycle,
    logged to MLflow and the store when tracking is on.

    With ``chosen_out``, the chosen cycle's model is copied there: this cycle's ``model_dir``, or
    ``handed_on``, the model the cycle before handed on (the chosen one of the earlier cycles).
    """
    scores = layout.read_json(evaluation_dir, layout.SCORES)["scores"] if evaluation_dir else {}
    shards = [layout.read_json(d, layout.METRICS) for d in rationale_dirs]
    summary = summarize_cycle(cycle, layout.read_json(verification_dir, layout.METRICS), shards) | scores
    decision = decide_next([*history, summary], cfg.decide)
    if chosen_out is not None:
        if decision["chosen"] != cycle and handed_on is None:
            raise ValueError(f"cycle {decision['chosen']} is chosen, but no earlier model was handed on")
        copy_model(model_dir if decision["chosen"] == cycle else handed_on, chosen_out)
    tracker = tracking.tracker(cfg, parent_run)
    outputs = [("answer", Path(verification_dir)), *(("rationalization", Path(d)) for d in rationale_dirs)]
    tracker.log_examples(cycle, outputs)
    tracker.log_cycle(summary, layout.read_json(sft_dir, layout.METRICS),
                      training_files(verification_dir, rationale_dirs), str(model_dir),
                      [*history, summary])
    if not decision["continue"] and not cfg.rlaif.enabled:  # else the RLAIF stage closes the run
        tracker.finish()
    return summary, decision


def copy_model(source: str | Path, dest: str | Path) -> None:
    """A model folder copied whole (a retried step's partial copy is replaced): a KFP output is
    its own artifact, so the chosen model cannot be a reference to another task's output."""
    dest = Path(dest)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial)
    if dest.exists():
        shutil.rmtree(dest)
    partial.rename(dest)


def training_files(verification_dir: str | Path, rationale_dirs: list[str | Path]) -> list[str]:
    """A cycle's training data: the verified answers and the verified rationales of every shard."""
    return [str(Path(d) / layout.VERIFIED) for d in (verification_dir, *rationale_dirs)]


def evaluate_suite(lm: Any, suite: EvalSuite, out_dir: str | Path, cfg: RunConfig,
                   progress: bool = True) -> dict[str, Any]:
    """Run one benchmark suite on a loaded model; writes ``report.json`` into ``out_dir``."""
    gen = dataclasses.replace(cfg.generate, temperature=cfg.evaluate.temperature,
                              max_new_tokens=cfg.evaluate.max_new_tokens)
    d, limit = suite.data, cfg.evaluate.limit
    if suite.name == "tempcompass":
        from videostar.eval.tempcompass import evaluate_tempcompass

        return evaluate_tempcompass(lm, d["data"], out_dir, gen, cfg.video, video_dir=d.get("videos"),
                                    limit=limit, progress=progress)
    if suite.name == "kinetics700":
        from videostar.eval.kinetics_qa import evaluate_kinetics

        return evaluate_kinetics(lm, d["csv"], d["videos"], out_dir, gen, cfg.video, cfg.verify,
                                 templates=cfg.templates, split=suite.split, limit=limit,
                                 progress=progress)
    if suite.name == "scenegraph":
        from videostar.eval.scenegraph_qa import evaluate_scenegraph

        return evaluate_scenegraph(lm, d["records"], out_dir, gen, cfg.video, cfg.verify, limit=limit,
                             progress=progress)
    from videostar.eval.finediving import evaluate_finediving

    return evaluate_finediving(lm, d["root"], d["coarse"], d["fine"], d["split_keys"], d["subactions"],
                               out_dir, gen, cfg.video, cfg.verify, templates=cfg.templates,
                               limit=limit, progress=progress)


def evaluate(model: str, out_dir: str | Path, cfg: RunConfig, stage: str, cycle: int | None = None,
             adapter_base: str | None = None, parent_run: str = "", progress: bool = True
             ) -> dict[str, float]:
    """Every configured suite on one model: the base model (stage ``baseline``), a cycle's SFT
    model (``cycle``, with its number) or the PPO policy after the cycles (``rlaif``).

    Returns the suites' headline numbers as ``eval.<suite>.<metric>`` (``val.`` for validation
    suites); they join the cycle's summary, so ``decide`` can use them, and go to MLflow when
    tracking is on.
    """
    from videostar.model import load_model

    if stage not in layout.STAGES or (stage == layout.CYCLE_STAGE) != (cycle is not None):
        raise ValueError(f"stage {stage!r} with cycle {cycle!r}: a cycle number belongs to stage 'cycle'")
    lm = load_model(model, adapter_base=adapter_base)
    scores: dict[str, float] = {}
    for suite in cfg.evaluate.suites:
        folder = suite.name if suite.role == "report" else f"{suite.role}-{suite.name}"
        report = evaluate_suite(lm, suite, Path(out_dir) / folder, cfg, progress)
        scores |= {f"{suite.prefix}.{suite.name}.{k}": float(v) for k, v in report["summary"].items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
    write_json(Path(out_dir) / layout.SCORES, {"stage": stage, "cycle": cycle, "scores": scores})
    tracking.tracker(cfg, parent_run).log_scores(stage, cycle, scores)
    return scores
