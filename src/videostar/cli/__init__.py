"""The ``videostar`` command: every Video-STaR step reads and writes files.

Exit codes: 0 done, 1 a step failed (one line says what and where), 2 bad configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from videostar import layout
from videostar.config import RunConfig, load_config
from videostar.config.scenegraph import RELEASE_SPLITS
from videostar.configs import example, examples
from videostar.data.records import AdapterResult, read_rows, write_json, write_jsonl
from videostar.errors import ConfigError, VideostarError, first_line
from videostar.export import FORMATS as EXPORT_FORMATS
from videostar.scenegraph.dataset import SOURCES as SCENEGRAPH_SOURCES
from videostar.star import steps
from videostar.terminal import console
from videostar.tiny import BUILDERS as TINY_BUILDERS
from videostar.training import distributed


def _print_metrics(title: str, metrics: dict[str, Any]) -> None:
    """A short, readable summary: scalar fields only (full metrics are in the JSON file)."""
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for key, value in metrics.items():
        if isinstance(value, int | float | str | bool) or value is None:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console(stderr=True).print(table)


def _report_problems(label: str, items: list[Any]) -> None:
    for item in items:
        text = item if isinstance(item, str) else f"{item['id']}: {item['video']}: {item['reason']}"
        print(f"{label}: {text}", file=sys.stderr)


def _write_dataset(result: AdapterResult, out: Path) -> int:
    write_jsonl(out / layout.RECORDS, result.records)
    write_json(out / "summary.json", result.summary())
    _report_problems("missing video", result.missing)
    _report_problems("malformed", result.errors)
    print(f"{len(result.records)} records -> {out / layout.RECORDS} "
          f"({len(result.missing)} missing videos, {len(result.errors)} malformed)")
    return 0


def cmd_model_tiny(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.tiny import build_tiny

    options = {k: getattr(args, k) for k in ("videos", "steps", "noise", "confusion", "seed",
                                               "scenegraph_videos")}
    options = {k: v for k, v in options.items() if v is not None}
    if args.arch is not None:  # argparse has refused a family with no tiny builder (choices=)
        options = {"steps": 0, **options, "arch": args.arch}
    info = build_tiny(args.out, **options)
    print(json.dumps(info))
    return 0


def cmd_data(args: argparse.Namespace, cfg: RunConfig) -> int:
    out = Path(args.out)
    if args.source == "synthetic" and args.kinetics:
        from videostar.data.synthetic import write_kinetics_split

        path = write_kinetics_split(out, args.count, args.seed)
        print(f"{args.count} held-out clips -> {path} (Kinetics-700 layout, videos in {out / 'videos'})")
        return 0
    if args.source == "synthetic":
        from videostar.data.synthetic import build_synthetic

        result = build_synthetic(out, args.count, cfg.templates, seed=args.seed)
    elif args.source == "kinetics700":
        from videostar.data.kinetics700 import build_kinetics700

        result = build_kinetics700(args.csv, args.videos, cfg.templates, split=args.split)
    elif args.source in SCENEGRAPH_SOURCES:
        from videostar.scenegraph.dataset import build_scenegraph_dataset, group_counts

        if args.min_steps is not None:  # e.g. a held-out split scored by steps 1, 2, 3+
            cfg.scenegraph.min_steps = args.min_steps
            cfg.scenegraph.validate("--min-steps / scenegraph")
        if getattr(args, "split", None) is not None:  # the release split (scenegraph.split)
            cfg.scenegraph.split = args.split

        result = build_scenegraph_dataset(args.source, out, cfg, getattr(args, "annotations", None),
                                    getattr(args, "videos", None), getattr(args, "count", 0),
                                    getattr(args, "seed", 0), getattr(args, "model", None),
                                    getattr(args, "clip_seconds", 1.0))
        print(f"questions per type/path length: {group_counts(result)}")
    elif args.source == "finediving":
        from videostar.data.finediving import build_finediving

        result = build_finediving(args.root, args.coarse, args.fine, args.split_keys,
                                  args.subactions, cfg.templates)
    else:
        from videostar.data.activitynet import build_activitynet

        result = build_activitynet(args.json, args.videos, cfg.templates)
    return _write_dataset(result, out)


def cmd_generate(args: argparse.Namespace, cfg: RunConfig) -> int:
    metrics = steps.generate(args.model, args.data, args.out, cfg, args.base, args.shard, args.num_shards,
                             fresh=args.fresh)
    _report_problems("video error", metrics["video_errors"])
    _print_metrics("generate", metrics)
    return 0


def cmd_verify(args: argparse.Namespace, cfg: RunConfig) -> int:
    _print_metrics("verify", steps.verify(args.answers, args.out, cfg, fresh=args.fresh))
    return 0


def cmd_rationalize(args: argparse.Namespace, cfg: RunConfig) -> int:
    metrics = steps.rationalize(args.model, args.rejected, args.out, cfg, args.base, args.shard,
                                args.num_shards, fresh=args.fresh)
    _report_problems("video error", metrics["video_errors"])
    _print_metrics("rationalize", metrics)
    return 0


def _training_outputs(args: argparse.Namespace) -> tuple[Path, Path]:
    """The model folder and metrics file: ``--out``'s model/ and metrics.json, or the paths given
    (how a launcher hands the step's own outputs to torchrun's workers)."""
    if args.out is None and (args.model_out is None or args.metrics_out is None):
        raise ConfigError(f"{args.command}: --out, or both --model-out and --metrics-out, are needed")
    out = Path(args.out) if args.out is not None else None
    return (Path(args.model_out) if args.model_out else out / "model",
            Path(args.metrics_out) if args.metrics_out else out / layout.METRICS)


def cmd_sft(args: argparse.Namespace, cfg: RunConfig) -> int:
    model_out, metrics_out = _training_outputs(args)
    metrics = steps.sft(args.base, args.data, model_out, metrics_out, cfg, parent_run=args.parent_run,
                        cycle=args.cycle)
    if not distributed.is_main():
        return 0
    _report_problems("video error", metrics["video_errors"])
    _print_metrics("sft", metrics)
    return 0


def cmd_preferences(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.rlaif import steps as rlaif

    metrics = rlaif.preferences(args.model, args.records, args.out, cfg, adapter_base=args.base)
    _report_problems("video error", metrics["video_errors"])
    _print_metrics("preferences", metrics)
    return 0


def cmd_reward_model(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.rlaif import steps as rlaif

    model_out, metrics_out = _training_outputs(args)
    metrics = rlaif.reward_model(args.model, args.preferences, model_out, metrics_out, cfg,
                                 adapter_base=args.base, parent_run=args.parent_run)
    if not distributed.is_main():
        return 0
    _report_problems("video error", metrics["video_errors"])
    _print_metrics("reward model", {k: v for k, v in metrics.items() if k != "loss_history"})
    return 0


def cmd_ppo(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.rlaif import steps as rlaif

    out = Path(args.out)
    metrics = rlaif.ppo(args.model, args.reward_model, args.records, args.preferences, out / "model", out,
                        cfg, adapter_base=args.base, fresh=args.fresh)
    _report_problems("video error", metrics["video_errors"])
    _print_metrics("ppo", {k: v for k, v in metrics.items() if k != "history"})
    return 0


def cmd_summarize(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.star.decide import summarize_cycle

    verify = json.loads(Path(args.verify).read_text())
    shards = [json.loads(Path(p).read_text()) for p in args.rationalize]
    summary = summarize_cycle(args.cycle, verify, shards)
    write_json(args.out, summary)
    _print_metrics(f"cycle {args.cycle}", summary)
    return 0


def cmd_decide(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.star.decide import decide

    history = [json.loads(Path(p).read_text()) for p in args.history]
    decision = decide(history, cfg.decide)
    if args.out:
        write_json(args.out, decision)
    print(json.dumps(decision))
    return 0


def cmd_pipeline_compile(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.pipelines.submit import compile_pipeline

    out = compile_pipeline(cfg, args.output, args.kubernetes_manifest, args.namespace)
    print(f"compiled {cfg.decide.max_cycles} cycles x {cfg.pipeline.num_shards} shards -> {out}")
    return 0


def cmd_pipeline_trainjob(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.training.trainjob import sft_job

    if cfg.pipeline.sft.launcher.kind != "trainjob":
        raise ConfigError("pipeline.sft.launcher.kind: trainjob is needed to render its TrainJob")
    import yaml

    job = yaml.safe_dump(sft_job(cfg, args.run, args.cycle), sort_keys=False)
    if args.output:
        Path(args.output).write_text(job)
    else:
        print(job, end="")
    return 0


def cmd_pipeline_submit(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.pipelines.submit import submit

    print(submit(cfg, args.host, args.run_name, args.namespace))
    return 0


def cmd_run(args: argparse.Namespace, cfg: RunConfig) -> int:
    if not args.local:
        raise ConfigError("run: only --local is supported here; use 'pipeline submit' for a cluster")
    from videostar.pipelines.local import print_report, run_local

    print_report(run_local(cfg, args.root))
    return 0


def cmd_eval(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.config import EVAL_SUITES, EvalSuite
    from videostar.eval.report import print_report
    from videostar.model import load_model

    if getattr(args, "predictions", None):
        from videostar.eval.tempcompass import score_predictions

        print_report(score_predictions(args.predictions, args.out, data=args.data))
        return 0
    if args.model is None or (args.suite == "tempcompass" and args.data is None):
        raise ConfigError(f"eval {args.suite}: --model and --data are needed (or --predictions DIR)")
    data = {k: getattr(args, k) for k in (*EVAL_SUITES[args.suite], "videos") if getattr(args, k, None)}
    suite = EvalSuite(args.suite, data, getattr(args, "split", None))
    if args.limit is not None:
        cfg.evaluate.limit = args.limit
    print_report(steps.evaluate_suite(load_model(args.model, adapter_base=args.base), suite, args.out, cfg))
    return 0


def cmd_compare(args: argparse.Namespace, cfg: RunConfig) -> int:
    from rich.table import Table

    from videostar.tracking import compare, tracking_uri

    if args.experiment:
        cfg.tracking.experiment = args.experiment
    if args.mlflow_uri:
        cfg.tracking.mlflow_uri = args.mlflow_uri
    if not tracking_uri(cfg.tracking):
        raise ConfigError("tracking.mlflow_uri: not set (nor MLFLOW_TRACKING_URI)")
    metric = args.metric or cfg.decide.metric
    parent, rows = compare(cfg, args.run, metric)
    headers = {"answer_yield": "answer", "rationalization_yield": "rationalized",
               "total_yield": "total", "train_loss": "loss", "train_examples": "examples"}
    headers |= {k: k.removeprefix("eval.") for r in rows for k in sorted(r) if k.startswith("eval.")}
    columns = list(headers)
    table = Table(title=f"{cfg.tracking.experiment}: run {parent}, cycle models ranked by {metric}")
    for col in ("rank", "cycle", "model", "version"):
        table.add_column(col, justify="right")
    for col in columns:
        table.add_column(headers[col], justify="right")
    for row in rows:
        version = f"{row['version'] or '-'} {' '.join('@' + a for a in row['aliases'])}".strip()
        table.add_row(str(row["rank"]), str(row["cycle"]), row["model_id"], version,
                      *(f"{row[c]:.4g}" if c in row else "-" for c in columns))
    console().print(table)
    return 0


def cmd_export(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar import export
    from videostar.tracking import tracking_uri

    if args.name is not None:
        export.check_name(args.name)  # before any reading: a path is refused with exit 2
    cycle = export.parse_cycle(args.cycle)
    if Path(args.run).is_dir():
        data = export.read_local_cycle(args.run, cycle, cfg.video.num_frames)
    else:
        uri = args.mlflow_uri or tracking_uri(cfg.tracking)
        if not uri:
            raise ConfigError(f"--run {args.run}: not a run folder, and no MLflow to look it up in "
                              "(tracking.mlflow_uri, $MLFLOW_TRACKING_URI or --mlflow-uri)")
        data = export.read_mlflow_cycle(uri, args.run, cycle)
    result = export.export(data, args.format, args.out, args.video_root, args.name)
    left_out = f"; {len(result.errors)} left out, named above" if result.errors else ""
    print(f"{result.rows} verified rows of {data.source} -> {result.path} ({args.format}; "
          f"videos relative to {result.video_root or '.'}{left_out})")
    return 0


def cmd_show(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Print a few rows of a JSONL file, for eyeballing answers and verdicts."""
    for row in read_rows(args.file)[: args.n]:
        verdict = row.get("verdict", {})
        print(f"[{row['id']}] {row['question']}\n  answer: {row.get('answer', '')}\n"
              f"  passed: {verdict.get('passed')}  {verdict.get('labels', '')}")
    return 0


def cmd_config_example(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Write a shipped example configuration, so a wheel user has what a checkout has in configs/."""
    text = example(args.name)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    if out.exists():
        raise VideostarError(f"{out}: already exists (not overwritten)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"example config {args.name} -> {out}")
    return 0


def cmd_plan(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Model-state memory per GPU and GPUs needed, per method and ZeRO stage (videostar.plan)."""
    from rich.table import Table

    from videostar import plan

    if (args.model is None) == (args.params is None):
        raise VideostarError("plan: give --model (a folder with config.json) or --params, not both")
    if args.model is not None:
        model = plan.meta_model(args.model)
        counts = {m: plan.count(model, m, args.lora_r) for m in plan.METHODS}
    else:
        counts = {m: plan.estimate(args.params, m, args.lora_r) for m in plan.METHODS}
    rows = plan.plan_rows(counts, args.gpus, args.gpu_memory, args.reserve)
    table = Table(title=f"model states, {counts['full'].total / 1e9:.2f} B parameters (activations "
                        f"not included: {args.reserve:.0%} of each GPU is kept for them)")
    for key in rows[0]:
        table.add_column(key)
    for row in rows:
        table.add_row(*map(str, row.values()))
    console().print(table)
    return 0


def _kinetics_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--csv", required=True, help="train.csv / validate.csv of Kinetics-700-2020")
    parser.add_argument("--videos", required=True, help="clip folder (flat or <split>/<label>/)")
    parser.add_argument("--split")
    return parser


def _finediving_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--root", required=True, help="holds FINADiving_MTL_256s/")
    parser.add_argument("--coarse", required=True, help="coarse annotation pickle")
    parser.add_argument("--fine", required=True, help="fine-grained annotation pickle")
    parser.add_argument("--split-keys", required=True, help="train or test split pickle")
    parser.add_argument("--subactions", required=True, help="sub-action type table pickle")
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse with its error as one line (no usage block): what every user mistake gets."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _int_at_least(low: int) -> Callable[[str], int]:
    """An integer option with its allowed range in the error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer (allowed: >= {low})") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is out of range (allowed: >= {low})")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def _number_in(low: float, high: float, allowed: str, low_open: bool = False) -> Callable[[str], float]:
    """A float option in [low, high] (``low_open``: above ``low``), its allowed range in the error."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number (allowed: {allowed})") from None
        if not (low < value if low_open else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range (allowed: {allowed})")
        return value
    parse.__name__ = f"number ({allowed})"
    return parse


_fraction = _number_in(0, 1, "0 to 1")
_positive = _number_in(0, sys.float_info.max, "a finite number > 0", low_open=True)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="videostar", description=__doc__)
    parser.add_argument("--config", help="run configuration (YAML); defaults when omitted")
    sub = parser.add_subparsers(dest="command", required=True)

    conf = sub.add_parser("config", help="example configurations").add_subparsers(dest="what", required=True)
    ex = conf.add_parser("example", help="write a shipped example config (stdout, or -o FILE)")
    ex.add_argument("name", choices=examples())
    ex.add_argument("-o", "--out", help="file to write (refused when it exists)")
    ex.set_defaults(func=cmd_config_example)

    model = sub.add_parser("model", help="model utilities").add_subparsers(dest="what", required=True)
    tiny = model.add_parser("tiny", help="write a tiny test checkpoint (default: the pretrained "
                            "Qwen2.5-VL demo base)")
    tiny.add_argument("--out", required=True)
    tiny.add_argument("--arch", choices=list(TINY_BUILDERS),
                      help="this family's tiny checkpoint instead; random weights unless --steps "
                           "pretrains it like the demo base")
    tiny.add_argument("--videos", type=_int_at_least(1), help="synthetic videos to pretrain on")
    tiny.add_argument("--steps", type=_int_at_least(0), help="pretraining steps (fewer: a weaker start)")
    tiny.add_argument("--confusion", type=_fraction,
                      help="share of shape captions naming the look-alike colour and segment "
                           "(higher: a weaker start)")
    tiny.add_argument("--noise", type=_fraction, help="share of STEP rationales with a wrong word")
    tiny.add_argument("--seed", type=_int_at_least(0))
    tiny.add_argument("--scenegraph-videos", type=_int_at_least(0),
                      help="also pretrain on the graph-path rationales of this many scene-graph videos")
    tiny.set_defaults(func=cmd_model_tiny)

    data = sub.add_parser("data", help="build records from a labeled dataset")
    sources = data.add_subparsers(dest="source", required=True)
    syn = sources.add_parser("synthetic", help="write synthetic shape videos and records")
    syn.add_argument("--count", type=_int_at_least(1), default=48)
    syn.add_argument("--seed", type=_int_at_least(0), default=0)
    syn.add_argument("--kinetics", action="store_true",
                     help="write a held-out split in the Kinetics-700 layout (validate.csv + clips)")
    k700 = _kinetics_args(sources.add_parser("kinetics700", help="Kinetics-700 annotation CSV + clips"))
    fd = _finediving_args(sources.add_parser("finediving", help="FineDiving frames + annotation pickles"))
    anet = sources.add_parser("activitynet", help="ActivityNet-Captions-style JSON + videos")
    anet.add_argument("--json", required=True)
    anet.add_argument("--videos", required=True)
    ag = sources.add_parser("action-genome", help="STEP: Action Genome annotations/ + videos")
    vidor = sources.add_parser("vidor", help="STEP: VidOR/VidVRD JSON annotations + videos")
    for p, what in ((ag, "the annotations/ folder (person_bbox.pkl, ...)"),
                    (vidor, "folder of per-video JSON files (any depth)")):
        p.add_argument("--annotations", required=True, help=what)
        p.add_argument("--videos", required=True)
        p.add_argument("--split", choices=RELEASE_SPLITS,
                       help="read only this release split's videos (default: scenegraph.split; unset: all)")
    stepsyn = sources.add_parser("scenegraph-synthetic",
                                 help="STEP: synthetic scene-graph videos with their ground truth")
    stepsyn.add_argument("--count", type=_int_at_least(1), default=24)
    stepsyn.add_argument("--seed", type=_int_at_least(0), default=0)
    induce = sources.add_parser("scenegraph-induce",
                                help="STEP: scene graphs induced by a model from raw videos")
    induce.add_argument("--model", required=True)
    induce.add_argument("--videos", required=True)
    induce.add_argument("--clip-seconds", type=_positive, default=1.0)
    for p in (ag, vidor, stepsyn, induce):
        p.add_argument("--min-steps", type=_int_at_least(1),
                       help="shortest reasoning path asked (default: scenegraph.min_steps)")
    for p in (syn, k700, fd, anet, ag, vidor, stepsyn, induce):
        p.add_argument("--out", required=True, help="folder for records.jsonl + summary.json")
    data.set_defaults(func=cmd_data)

    gen = sub.add_parser("generate", help="answer every record's question")
    gen.add_argument("--model", required=True)
    gen.add_argument("--data", required=True, help="records.jsonl")
    gen.add_argument("--out", required=True, help="folder for answers.jsonl + metrics.json")
    gen.set_defaults(func=cmd_generate)

    ver = sub.add_parser("verify", help="keep answers that contain every label")
    ver.add_argument("--answers", required=True, nargs="+", help="answers.jsonl of every shard")
    ver.add_argument("--out", required=True, help="folder for verified/rejected.jsonl")
    ver.set_defaults(func=cmd_verify)

    rat = sub.add_parser("rationalize", help="retry rejected records with the label as a hint")
    rat.add_argument("--model", required=True)
    rat.add_argument("--rejected", required=True)
    rat.add_argument("--out", required=True)
    rat.set_defaults(func=cmd_rationalize)
    for p in (gen, rat, ver):
        p.add_argument("--fresh", action="store_true",
                       help="discard what --out holds from other work (another model, input or "
                            "settings) instead of refusing; the same work always resumes")
    for p in (gen, rat):
        p.add_argument("--base", help="base checkpoint for an adapter (default: its model card's)")
        p.add_argument("--shard", type=_int_at_least(0), default=0, help="this shard's index")
        p.add_argument("--num-shards", type=_int_at_least(1), default=1)

    sft = sub.add_parser("sft", help="instruction-tune the base model on verified answers")
    sft.add_argument("--base", required=True)
    sft.add_argument("--data", required=True, nargs="+", help="verified.jsonl files")
    sft.add_argument("--cycle", type=_int_at_least(0), default=0, help="the MLflow cycle run to log to")
    sft.set_defaults(func=cmd_sft)

    prefs = sub.add_parser("preferences", help="RLAIF: sample two answers per prompt and judge them")
    prefs.add_argument("--model", required=True, help="the SFT model")
    prefs.add_argument("--records", required=True)
    prefs.add_argument("--out", required=True, help="folder for pairs.jsonl, heldout.jsonl, split.json")
    rew = sub.add_parser("reward-model", help="RLAIF: train the reward model on preference pairs")
    rew.add_argument("--model", required=True, help="the SFT model")
    rew.add_argument("--preferences", required=True, help="a 'videostar preferences' output folder")
    for p in (sft, rew):
        p.add_argument("--out", help="folder for model/ + metrics.json (a rerun resumes an "
                                     "unfinished model from its checkpoints)")
        p.add_argument("--model-out", help="the model folder (instead of --out's model/)")
        p.add_argument("--metrics-out", help="the metrics file (instead of --out's metrics.json)")
        p.add_argument("--parent-run", default="", help="the pipeline's parent MLflow run")
    ppo = sub.add_parser("ppo", help="RLAIF: align the SFT model with PPO against the reward model")
    ppo.add_argument("--model", required=True, help="the SFT model")
    ppo.add_argument("--reward-model", required=True, help="the reward model folder")
    ppo.add_argument("--records", required=True)
    ppo.add_argument("--preferences", required=True, help="its split.json names the held-out videos")
    ppo.add_argument("--out", required=True, help="folder for model/, checkpoints/, metrics.json")
    ppo.add_argument("--fresh", action="store_true",
                     help="discard checkpoints of other work in --out instead of refusing")
    for p, func in ((prefs, cmd_preferences), (rew, cmd_reward_model), (ppo, cmd_ppo)):
        p.add_argument("--base", help="the SFT adapter's base (default: its model card's)")
        p.set_defaults(func=func)

    summ = sub.add_parser("summarize", help="a cycle's yields from its verify/rationalize metrics")
    summ.add_argument("--cycle", type=_int_at_least(0), required=True)
    summ.add_argument("--verify", required=True)
    summ.add_argument("--rationalize", nargs="*", default=[], help="metrics of every shard")
    summ.add_argument("--out", required=True)
    summ.set_defaults(func=cmd_summarize)

    dec = sub.add_parser("decide", help="continue with another cycle, or stop")
    dec.add_argument("--history", nargs="+", required=True, help="cycle summaries, in order")
    dec.add_argument("--out")
    dec.set_defaults(func=cmd_decide)

    pipe = sub.add_parser("pipeline", help="the Kubeflow pipeline").add_subparsers(
        dest="what", required=True)
    comp = pipe.add_parser("compile", help="compile the cyclic pipeline for --config")
    comp.add_argument("-o", "--output", required=True)
    comp.add_argument("--kubernetes-manifest", action="store_true",
                      help="emit Kubernetes-native Pipeline/PipelineVersion objects (GitOps)")
    comp.add_argument("--namespace")
    comp.set_defaults(func=cmd_pipeline_compile)
    tj = pipe.add_parser("trainjob", help="the TrainJob the sft step creates (launcher: trainjob)")
    tj.add_argument("--run", default="example", help="the pipeline run id the job name derives from")
    tj.add_argument("--cycle", type=_int_at_least(0), default=0)
    tj.add_argument("-o", "--output", help="file to write (default: stdout)")
    tj.set_defaults(func=cmd_pipeline_trainjob)
    subm = pipe.add_parser("submit", help="submit a run to a KFP endpoint")
    subm.add_argument("--host", required=True, help="KFP API, e.g. http://localhost:8080")
    subm.add_argument("--run-name")
    subm.add_argument("--namespace")
    subm.set_defaults(func=cmd_pipeline_submit)

    run = sub.add_parser("run", help="run the pipeline")
    run.add_argument("--local", action="store_true", help="on this machine through kfp.local")
    run.add_argument("--root", default="work/pipeline-runs", help="local pipeline root")
    run.set_defaults(func=cmd_run)

    ev = sub.add_parser("eval", help="evaluate a model on a benchmark").add_subparsers(
        dest="suite", required=True)
    tc = ev.add_parser("tempcompass", help="TempCompass question files + videos")
    tc.add_argument("--data", help="folder with questions/ and meta_info.json")
    tc.add_argument("--videos", help="default: DATA/videos")
    tc.add_argument("--predictions", help="score this predictions/<model>/ folder (official layout) "
                    "instead of running a model; --data then only supplies meta_info.json")
    tc.add_argument("--model")
    kq = _kinetics_args(ev.add_parser("kinetics700", help="Kinetics700-QA on a held-out split"))
    fdv = _finediving_args(ev.add_parser("finediving", help="FineDiving action quality assessment"))
    stq = ev.add_parser("scenegraph", help="STEP: held-out scene-graph questions, accuracy by steps")
    stq.add_argument("--records", required=True, help="records.jsonl of `videostar data scenegraph-*`")
    for p in (kq, fdv, stq):
        p.add_argument("--model", required=True)
    for p in (tc, kq, fdv, stq):
        p.add_argument("--base", help="base checkpoint for an adapter (default: its model card's)")
        p.add_argument("--out", required=True, help="folder for predictions and report.json")
        p.add_argument("--limit", type=_int_at_least(1), help="evaluate the first N items only")
        p.set_defaults(func=cmd_eval)

    cmp_ = sub.add_parser("compare", help="a run's cycle models (MLflow LoggedModels), ranked by a metric")
    cmp_.add_argument("--experiment", help="default: tracking.experiment of --config")
    cmp_.add_argument("--run", help="parent run id (default: the latest pipeline run)")
    cmp_.add_argument("--mlflow-uri", help="default: tracking.mlflow_uri or $MLFLOW_TRACKING_URI")
    cmp_.add_argument("--metric", help="rank by this metric, best first (default: decide.metric)")
    cmp_.set_defaults(func=cmd_compare)

    exp = sub.add_parser("export", help="a cycle's training data in LLaMA-Factory, LLaVA or HF format")
    exp.add_argument("--run", required=True, help="a local run folder, or an MLflow run id (parent or cycle)")
    exp.add_argument("--cycle", default="last", help="cycle number or 'last' (default)")
    exp.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    exp.add_argument("--out", required=True, help="output folder")
    exp.add_argument("--video-root", help="prefix for the video paths (default: relative to their "
                     "common folder), e.g. s3://bucket/videos or the folder a trainer mounts")
    exp.add_argument("--name", help="dataset name (default: videostar_cycle<k>)")
    exp.add_argument("--mlflow-uri", help="for an MLflow run (default: tracking.mlflow_uri)")
    exp.set_defaults(func=cmd_export)

    pl = sub.add_parser("plan", help="GPU memory of a run's model states: bytes per parameter and "
                        "GPUs needed, per method (full/LoRA/QLoRA), stage (SFT/PPO) and ZeRO stage")
    pl.add_argument("--model", help="a model folder: its config.json (no weights are read)")
    pl.add_argument("--params", type=_positive, help="or a parameter count, e.g. 8.3e9")
    pl.add_argument("--lora-r", type=_int_at_least(1), default=64, help="LoRA rank (default 64)")
    pl.add_argument("--gpus", type=_int_at_least(1), default=8, help="GPUs of the GiB column (default 8)")
    pl.add_argument("--gpu-memory", type=_positive, default=80.0, help="GiB per GPU (default 80)")
    pl.add_argument("--reserve", type=_fraction, default=0.2,
                    help="share of each GPU kept for activations (default 0.2)")
    pl.set_defaults(func=cmd_plan)

    show = sub.add_parser("show", help="print rows of a JSONL output")
    show.add_argument("file")
    show.add_argument("-n", type=_int_at_least(0), default=5)
    show.set_defaults(func=cmd_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        if getattr(args, "num_shards", None) is not None:
            steps.shard([], args.shard, args.num_shards)  # refused before any model is loaded
        return args.func(args, cfg)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except (VideostarError, OSError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        # a missing, unreadable or non-JSON file named on the command line: one line, no traceback
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 1

