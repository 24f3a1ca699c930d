"""``videostar eval <suite>`` (a model on a benchmark) and ``videostar compare`` (a run's cycle
models, ranked)."""

from __future__ import annotations

import argparse

from videostar.cli.common import Subcommands, add_adapter_base, int_at_least
from videostar.cli.data import finediving_args, kinetics_args
from videostar.config import RunConfig
from videostar.errors import ConfigError
from videostar.star import steps
from videostar.terminal import console


def add_parsers(sub: Subcommands) -> None:
    ev = sub.add_parser("eval", help="evaluate a model on a benchmark").add_subparsers(
        dest="suite", required=True)
    tc = ev.add_parser("tempcompass", help="TempCompass question files + videos")
    tc.add_argument("--data", help="folder with questions/ and meta_info.json")
    tc.add_argument("--videos", help="default: DATA/videos")
    tc.add_argument("--predictions", help="score this predictions/<model>/ folder (official layout) "
                    "instead of running a model; --data then only supplies meta_info.json")
    tc.add_argument("--model")
    kq = kinetics_args(ev.add_parser("kinetics700", help="Kinetics700-QA on a held-out split"))
    fdv = finediving_args(ev.add_parser("finediving", help="FineDiving action quality assessment"))
    stq = ev.add_parser("scenegraph", help="STEP: held-out scene-graph questions, accuracy by steps")
    stq.add_argument("--records", required=True, help="records.jsonl of `videostar data scenegraph-*`")
    for p in (kq, fdv, stq):
        p.add_argument("--model", required=True)
    for p in (tc, kq, fdv, stq):
        add_adapter_base(p)
        p.add_argument("--out", required=True, help="folder for predictions and report.json")
        p.add_argument("--limit", type=int_at_least(1), help="evaluate the first N items only "
                       "(evaluate.limit)")
        p.set_defaults(func=cmd_eval)

    cmp_ = sub.add_parser("compare", help="a run's cycle models (MLflow LoggedModels), ranked by a metric")
    cmp_.add_argument("--experiment", help="default: tracking.experiment of --config")
    cmp_.add_argument("--run", help="parent run id (default: the latest pipeline run)")
    cmp_.add_argument("--mlflow-uri", help="default: tracking.mlflow_uri or $MLFLOW_TRACKING_URI")
    cmp_.add_argument("--metric", help="rank by this metric, best first (default: decide.metric)")
    cmp_.set_defaults(func=cmd_compare)


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
    lm = load_model(args.model, adapter_base=args.adapter_base)
    print_report(steps.evaluate_suite(lm, suite, args.out, cfg))
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
