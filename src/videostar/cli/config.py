"""``videostar config example|reference``: the shipped example configurations, and the reference
of every configuration key (what ``docs/config-reference.md`` holds)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from videostar.cli.common import Subcommands
from videostar.config import RunConfig
from videostar.configs import example, examples
from videostar.errors import VideostarError


def add_parsers(sub: Subcommands) -> None:
    conf = sub.add_parser("config", help="example configurations and the configuration reference"
                          ).add_subparsers(dest="what", required=True)
    ex = conf.add_parser("example", help="write a shipped example config (stdout, or -o FILE)")
    ex.add_argument("name", choices=examples())
    ex.add_argument("-o", "--out", help="file to write (refused when it exists)")
    ex.set_defaults(func=cmd_config_example)
    ref = conf.add_parser("reference", help="every config key's type, default, rule and meaning, as "
                          "Markdown (stdout, or -o FILE)")
    ref.add_argument("-o", "--out", help="file to write (replaced: it is generated)")
    ref.set_defaults(func=cmd_config_reference)


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


def cmd_config_reference(args: argparse.Namespace, cfg: RunConfig) -> int:
    """The reference generated from the config dataclasses (videostar.config.reference)."""
    from videostar.config.reference import render

    text = render()
    if args.out is None:
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0
