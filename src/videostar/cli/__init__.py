"""The ``videostar`` command: every Video-STaR step reads and writes files.

Exit codes: 0 done, 1 a step failed (one line says what and where), 2 bad configuration.
"""

from __future__ import annotations

import argparse
import json
import sys

from videostar.cli import config, data, eval, export, model, pipeline, rlaif, star
from videostar.cli.common import Parser
from videostar.config import load_config
from videostar.errors import ConfigError, VideostarError, first_line
from videostar.star import steps
from videostar.training import distributed

GROUPS = (config, model, data, star, rlaif, pipeline, eval, export)
"""The command groups, in ``--help`` order: each module registers its commands (``add_parsers``)."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="videostar", description=__doc__)
    parser.add_argument("--config", help="run configuration (YAML); defaults when omitted")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code = 1
    try:
        cfg = load_config(args.config)
        if getattr(args, "num_shards", None) is not None:
            steps.shard([], args.shard, args.num_shards)  # refused before any model is loaded
        code = args.func(args, cfg)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        code = 2
    except (VideostarError, OSError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        # a missing, unreadable or non-JSON file named on the command line: one line, no traceback
        print(f"error: {first_line(exc)}", file=sys.stderr)
    finally:
        distributed.shutdown(done=code == 0)
    return code
