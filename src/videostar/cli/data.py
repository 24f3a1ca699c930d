"""``videostar data <source>``: records (records.jsonl + summary.json) from a labeled dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from videostar import layout
from videostar.cli.common import Subcommands, int_at_least, positive, report_problems
from videostar.config import RunConfig
from videostar.config.scenegraph import RELEASE_SPLITS
from videostar.data.records import AdapterResult, write_json, write_jsonl
from videostar.scenegraph.dataset import SOURCES as SCENEGRAPH_SOURCES


def kinetics_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The Kinetics-700 inputs, read by ``data kinetics700`` and ``eval kinetics700`` alike."""
    parser.add_argument("--csv", required=True, help="train.csv / validate.csv of Kinetics-700-2020")
    parser.add_argument("--videos", required=True, help="clip folder (flat or <split>/<label>/)")
    parser.add_argument("--split")
    return parser


def finediving_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The FineDiving inputs, read by ``data finediving`` and ``eval finediving`` alike."""
    parser.add_argument("--root", required=True, help="holds FINADiving_MTL_256s/")
    parser.add_argument("--coarse", required=True, help="coarse annotation pickle")
    parser.add_argument("--fine", required=True, help="fine-grained annotation pickle")
    parser.add_argument("--split-keys", required=True, help="train or test split pickle")
    parser.add_argument("--subactions", required=True, help="sub-action type table pickle")
    return parser


def add_parsers(sub: Subcommands) -> None:
    data = sub.add_parser("data", help="build records from a labeled dataset")
    sources = data.add_subparsers(dest="source", required=True)
    syn = sources.add_parser("synthetic", help="write synthetic shape videos and records")
    syn.add_argument("--count", type=int_at_least(1), default=48)
    syn.add_argument("--seed", type=int_at_least(0), default=0)
    syn.add_argument("--kinetics", action="store_true",
                     help="write a held-out split in the Kinetics-700 layout (validate.csv + clips)")
    k700 = kinetics_args(sources.add_parser("kinetics700", help="Kinetics-700 annotation CSV + clips"))
    fd = finediving_args(sources.add_parser("finediving", help="FineDiving frames + annotation pickles"))
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
    stepsyn.add_argument("--count", type=int_at_least(1), default=24)
    stepsyn.add_argument("--seed", type=int_at_least(0), default=0)
    induce = sources.add_parser("scenegraph-induce",
                                help="STEP: scene graphs induced by a model from raw videos")
    induce.add_argument("--model", required=True)
    induce.add_argument("--videos", required=True)
    induce.add_argument("--clip-seconds", type=positive, default=1.0)
    for p in (ag, vidor, stepsyn, induce):
        p.add_argument("--min-steps", type=int_at_least(1),
                       help="shortest reasoning path asked (default: scenegraph.min_steps)")
    for p in (syn, k700, fd, anet, ag, vidor, stepsyn, induce):
        p.add_argument("--out", required=True, help="folder for records.jsonl + summary.json")
    data.set_defaults(func=cmd_data)


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


def _write_dataset(result: AdapterResult, out: Path) -> int:
    write_jsonl(out / layout.RECORDS, result.records)
    write_json(out / "summary.json", result.summary())
    report_problems("missing video", result.missing)
    report_problems("malformed", result.errors)
    print(f"{len(result.records)} records -> {out / layout.RECORDS} "
          f"({len(result.missing)} missing videos, {len(result.errors)} malformed)")
    return 0
