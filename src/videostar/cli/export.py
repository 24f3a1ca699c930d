"""``videostar export``: a cycle's verified training data for another trainer."""

from __future__ import annotations

import argparse
from pathlib import Path

from videostar.cli.common import Subcommands
from videostar.config import RunConfig
from videostar.errors import ConfigError
from videostar.export import FORMATS as EXPORT_FORMATS


def add_parsers(sub: Subcommands) -> None:
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
