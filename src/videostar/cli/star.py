"""The Video-STaR cycle, one command per step: generate, verify, rationalize, sft, evaluate,
summarize, decide; and ``show`` to read what they wrote."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from videostar import layout
from videostar.cli.common import (
    Subcommands,
    add_adapter_base,
    add_training_outputs,
    int_at_least,
    print_metrics,
    report_step,
    training_outputs,
)
from videostar.config import RunConfig
from videostar.data.records import read_rows, write_json
from videostar.star import steps


def add_parsers(sub: Subcommands) -> None:
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
        add_adapter_base(p)
        p.add_argument("--shard", type=int_at_least(0), default=0, help="this shard's index")
        p.add_argument("--num-shards", type=int_at_least(1), default=1)

    sft = sub.add_parser("sft", help="instruction-tune the base model on verified answers")
    sft.add_argument("--base-model", required=True,
                     help="the model every cycle trains from (pipeline.base_model)")
    sft.add_argument("--data", required=True, nargs="+", help="verified.jsonl files")
    sft.add_argument("--cycle", type=int_at_least(0), default=0, help="the MLflow cycle run to log to")
    add_training_outputs(sft)
    sft.set_defaults(func=cmd_sft)

    ev = sub.add_parser("evaluate", help="every configured evaluation suite on one model (the pipeline's "
                                         "evaluate step): scores.json")
    ev.add_argument("--model", required=True)
    add_adapter_base(ev)
    ev.add_argument("--stage", choices=layout.STAGES, default=layout.CYCLE_STAGE)
    ev.add_argument("--cycle", type=int_at_least(0), default=0, help="the cycle (stage cycle)")
    ev.add_argument("--out", required=True, help="folder for scores.json and each suite's report")
    ev.set_defaults(func=cmd_evaluate)

    summ = sub.add_parser("summarize", help="a cycle's yields from its verify/rationalize metrics")
    summ.add_argument("--cycle", type=int_at_least(0), required=True)
    summ.add_argument("--verify", required=True)
    summ.add_argument("--rationalize", nargs="*", default=[], help="metrics of every shard")
    summ.add_argument("--scores", help="evaluate's scores.json: its numbers join the summary, for decide")
    summ.add_argument("--out", required=True)
    summ.set_defaults(func=cmd_summarize)

    dec = sub.add_parser("decide", help="continue with another cycle, or stop")
    dec.add_argument("--history", nargs="+", required=True, help="cycle summaries, in order")
    dec.add_argument("--out")
    dec.set_defaults(func=cmd_decide)

    show = sub.add_parser("show", help="print rows of a JSONL output")
    show.add_argument("file")
    show.add_argument("-n", type=int_at_least(0), default=5)
    show.set_defaults(func=cmd_show)


def cmd_generate(args: argparse.Namespace, cfg: RunConfig) -> int:
    metrics = steps.generate(args.model, args.data, args.out, cfg, args.adapter_base, args.shard,
                             args.num_shards, fresh=args.fresh)
    return report_step("generate", metrics)


def cmd_verify(args: argparse.Namespace, cfg: RunConfig) -> int:
    print_metrics("verify", steps.verify(args.answers, args.out, cfg, fresh=args.fresh))
    return 0


def cmd_rationalize(args: argparse.Namespace, cfg: RunConfig) -> int:
    metrics = steps.rationalize(args.model, args.rejected, args.out, cfg, args.adapter_base, args.shard,
                                args.num_shards, fresh=args.fresh)
    return report_step("rationalize", metrics)


def cmd_sft(args: argparse.Namespace, cfg: RunConfig) -> int:
    model_out, metrics_out = training_outputs(args)
    metrics = steps.run_sft_step(args.base_model, args.data, model_out, metrics_out, cfg,
                                 parent_run=args.parent_run, cycle=args.cycle)
    return report_step("sft", metrics)


def cmd_evaluate(args: argparse.Namespace, cfg: RunConfig) -> int:
    cycle = args.cycle if args.stage == layout.CYCLE_STAGE else None
    print_metrics(f"evaluate ({args.stage})", steps.evaluate(args.model, args.out, cfg, args.stage, cycle,
                                                              adapter_base=args.adapter_base))
    return 0


def cmd_summarize(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.star.decide import summarize_cycle

    verify = json.loads(Path(args.verify).read_text())
    shards = [json.loads(Path(p).read_text()) for p in args.rationalize]
    summary = summarize_cycle(args.cycle, verify, shards)
    if args.scores:
        summary |= json.loads(Path(args.scores).read_text())["scores"]
    write_json(args.out, summary)
    print_metrics(f"cycle {args.cycle}", summary)
    return 0


def cmd_decide(args: argparse.Namespace, cfg: RunConfig) -> int:
    from videostar.star.decide import decide

    history = [json.loads(Path(p).read_text()) for p in args.history]
    try:
        decision = decide(history, cfg.decide)
    except KeyError as e:  # e.g. decide.select's validation number, without summarize --scores
        print(f"videostar decide: {e.args[0]} (a suite's numbers join a summary through summarize "
              f"--scores <evaluate's scores.json>)", file=sys.stderr)
        return 2
    if args.out:
        write_json(args.out, decision)
    print(json.dumps(decision))
    return 0


def cmd_show(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Print a few rows of a JSONL file, for eyeballing answers and verdicts."""
    for row in read_rows(args.file)[: args.n]:
        verdict = row.get("verdict", {})
        print(f"[{row['id']}] {row['question']}\n  answer: {row.get('answer', '')}\n"
              f"  passed: {verdict.get('passed')}  {verdict.get('labels', '')}")
    return 0
