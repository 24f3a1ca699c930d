"""``videostar model tiny`` (a test checkpoint) and ``videostar plan`` (a model's GPU memory)."""

from __future__ import annotations

import argparse
import json

from videostar.cli.common import Subcommands, fraction, int_at_least, positive
from videostar.config import RunConfig
from videostar.errors import VideostarError
from videostar.terminal import console
from videostar.tiny import BUILDERS as TINY_BUILDERS


def add_parsers(sub: Subcommands) -> None:
    model = sub.add_parser("model", help="model utilities").add_subparsers(dest="what", required=True)
    tiny = model.add_parser("tiny", help="write a tiny test checkpoint (default: the pretrained "
                            "Qwen2.5-VL demo base)")
    tiny.add_argument("--out", required=True)
    tiny.add_argument("--arch", choices=list(TINY_BUILDERS),
                      help="this family's tiny checkpoint instead; random weights unless "
                           "--pretrain-steps pretrains it like the demo base")
    tiny.add_argument("--videos", type=int_at_least(1), help="synthetic videos to pretrain on")
    # build_tiny's ``steps``, named apart from the pipeline's steps and the STEP method
    tiny.add_argument("--pretrain-steps", dest="steps", type=int_at_least(0),
                      help="pretraining steps (fewer: a weaker start)")
    tiny.add_argument("--confusion", type=fraction,
                      help="share of shape captions naming the look-alike colour and segment "
                           "(higher: a weaker start)")
    tiny.add_argument("--noise", type=fraction, help="share of STEP rationales with a wrong word")
    tiny.add_argument("--seed", type=int_at_least(0))
    tiny.add_argument("--scenegraph-videos", type=int_at_least(0),
                      help="also pretrain on the graph-path rationales of this many scene-graph videos")
    tiny.set_defaults(func=cmd_model_tiny)

    pl = sub.add_parser("plan", help="GPU memory of a run's model states: bytes per parameter and "
                        "GPUs needed, per method (full/LoRA/QLoRA), stage (SFT/PPO) and ZeRO stage")
    pl.add_argument("--model", help="a model folder: its config.json (no weights are read)")
    pl.add_argument("--params", type=positive, help="or a parameter count, e.g. 8.3e9")
    pl.add_argument("--lora-r", type=int_at_least(1), default=64, help="LoRA rank (default 64)")
    pl.add_argument("--gpus", type=int_at_least(1), default=8, help="GPUs of the GiB column (default 8)")
    pl.add_argument("--gpu-memory", type=positive, default=80.0, help="GiB per GPU (default 80)")
    pl.add_argument("--reserve", type=fraction, default=0.2,
                    help="share of each GPU kept for activations (default 0.2)")
    pl.set_defaults(func=cmd_plan)


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
