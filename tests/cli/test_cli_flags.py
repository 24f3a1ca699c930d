"""Flags are named as the config keys they set (issue 26), and ``videostar config reference`` is the
generated configuration reference."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from videostar.cli import build_parser, main
from videostar.config import RunConfig
from videostar.config.reference import render

pytestmark = pytest.mark.fast

KEY = re.compile(r"\b[a-z_]+(?:\.[a-z_]+)+\b")


def options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, option) for every option of every command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from options(child, (*path, name))
        elif action.option_strings and action.help:
            yield path, action


def is_config_key(dotted: str) -> bool:
    """``scenegraph.min_steps`` is a key of :class:`RunConfig`; ``records.jsonl`` is not."""
    obj = RunConfig()
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(obj) or not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


TIED = [(path, action, key) for path, action in options(build_parser())
        for key in KEY.findall(action.help) if is_config_key(key)]


def test_the_help_names_config_keys():
    assert {key for _, _, key in TIED} >= {"scenegraph.min_steps", "scenegraph.split", "evaluate.limit",
                                           "pipeline.base_model", "tracking.mlflow_uri", "decide.metric"}


@pytest.mark.parametrize("path, action, key",
                         [pytest.param(*row, id=f"{' '.join(row[0])} {row[1].option_strings[-1]}")
                          for row in TIED])
def test_an_option_is_named_as_the_config_key_its_help_names(path, action, key):
    assert action.option_strings[-1] == "--" + key.rsplit(".", 1)[1].replace("_", "-"), \
        f"videostar {' '.join(path)} {action.option_strings[-1]} sets {key}"


def test_no_flag_takes_two_meanings():
    """``--base`` was the LoRA base in one command and the model to train from in another."""
    flags = {flag for _, action in options(build_parser()) for flag in action.option_strings}
    assert {"--adapter-base", "--base-model", "--pretrain-steps"} <= flags
    assert not flags & {"--base", "--steps"}


def test_config_reference_prints_and_writes_the_generated_reference(tmp_path, capsys):
    assert main(["config", "reference"]) == 0
    assert capsys.readouterr().out == render()
    out = tmp_path / "reference.md"
    out.write_text("stale\n")
    assert main(["config", "reference", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render()
