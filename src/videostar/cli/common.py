"""What every command group shares: the one-line parser error, checked number types, the metric
table and the problem lines a step prints, and a training step's output paths."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from videostar import layout
from videostar.errors import ConfigError
from videostar.terminal import console

Subcommands = argparse._SubParsersAction
"""What ``add_subparsers`` returns: where each command group's ``add_parsers`` adds its commands."""


class Parser(argparse.ArgumentParser):
    """argparse with its error as one line (no usage block): what every user mistake gets."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def int_at_least(low: int) -> Callable[[str], int]:
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


def number_in(low: float, high: float, allowed: str, low_open: bool = False) -> Callable[[str], float]:
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


fraction = number_in(0, 1, "0 to 1")
positive = number_in(0, sys.float_info.max, "a finite number > 0", low_open=True)


def print_metrics(title: str, metrics: dict[str, Any]) -> None:
    """A short, readable summary: scalar fields only (full metrics are in the JSON file)."""
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for key, value in metrics.items():
        if isinstance(value, int | float | str | bool) or value is None:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console(stderr=True).print(table)


def report_problems(label: str, items: list[Any]) -> None:
    """One stderr line per skipped item (a video that failed, a malformed row), so none is silent."""
    for item in items:
        text = item if isinstance(item, str) else f"{item['id']}: {item['video']}: {item['reason']}"
        print(f"{label}: {text}", file=sys.stderr)


def report_step(title: str, metrics: dict[str, Any]) -> int:
    """A model step's result: one line per video it could not read, then its summary; exit 0.
    Under torchrun only rank 0 reports (every rank returns the same metrics)."""
    from videostar.training import distributed

    if distributed.is_main():
        report_problems("video error", metrics["video_errors"])
        print_metrics(title, metrics)
    return 0


def add_training_outputs(parser: argparse.ArgumentParser) -> None:
    """The outputs of a training step (sft, reward-model): ``--out``, or the two paths a launcher
    hands torchrun's workers."""
    parser.add_argument("--out", help="folder for model/ + metrics.json (a rerun resumes an "
                                      "unfinished model from its checkpoints)")
    parser.add_argument("--model-out", help="the model folder (instead of --out's model/)")
    parser.add_argument("--metrics-out", help="the metrics file (instead of --out's metrics.json)")
    parser.add_argument("--parent-run", default="", help="the pipeline's parent MLflow run")


def training_outputs(args: argparse.Namespace) -> tuple[Path, Path]:
    """The model folder and metrics file: ``--out``'s model/ and metrics.json, or the paths given
    (how a launcher hands the step's own outputs to torchrun's workers)."""
    if args.out is None and (args.model_out is None or args.metrics_out is None):
        raise ConfigError(f"{args.command}: --out, or both --model-out and --metrics-out, are needed")
    out = Path(args.out) if args.out is not None else None
    return (Path(args.model_out) if args.model_out else out / "model",
            Path(args.metrics_out) if args.metrics_out else out / layout.METRICS)


def add_adapter_base(parser: argparse.ArgumentParser) -> None:
    """``--adapter-base``: the ``adapter_base`` of the model loaders, where a LoRA ``--model`` sits."""
    parser.add_argument("--adapter-base",
                        help="base checkpoint for an adapter --model (default: its model card's)")
