"""Fault suite: out-of-range settings, duplicate YAML keys, unreadable config files, and every
subcommand given a bad argument: each is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from videostar.cli import build_parser, main
from videostar.cli.common import int_at_least

pytestmark = [pytest.mark.fast, pytest.mark.faults]


@pytest.mark.parametrize(
    ("yaml_text", "field", "allowed"),
    [
        ("verify: {class_ratio: 5}", "verify.class_ratio", "[0, 1]"),
        ("verify: {range_iou: -1}", "verify.range_iou", "[0, 1]"),
        ("verify: {float_rel_tol: 100}", "verify.float_rel_tol", "[0, 1]"),
        ("video: {fps: -2}", "video.fps", "> 0"),
        ("video: {max_frames: -5}", "video.max_frames", ">= 1"),
        ("sft: {warmup_ratio: 7}", "sft.warmup_ratio", "[0, 1)"),
        ("sft: {lora: {r: 0}}", "sft.lora.r", ">= 1"),
        ("sft: {lr: .inf}", "sft.lr", "a finite number"),
        ("sft: {lr: .nan}", "sft.lr", "a finite number"),
        ("decide: {min_delta: -5}", "decide.min_delta", ">= 0"),
        ("sft: {deepspeed: /nowhere/ds.json}", "sft.deepspeed", "zero2.json"),
        ("rationalize: {hint: 'Answer: {label} in {colour}'}", "rationalize.hint", "{colour}"),
        ("rationalize: {hint: 'Answer: {label'}", "rationalize.hint", "format template"),
        ("templates: {subaction_order: ['Which comes {when}?']}", "templates.subaction_order[0]",
         "allowed: {anchor}, {relation}"),
        ("rlaif: {ppo: {minibatch_size: 32, batch_size: 4}}", "rlaif.ppo.minibatch_size",
         "at most batch_size (4)"),
        ("rlaif: {ppo: {gamma: 1.5}}", "rlaif.ppo.gamma", "[0, 1]"),
        ("rlaif: {reward_model: {lr: -1}}", "rlaif.reward_model.lr", "> 0"),
        ("evaluate: {limit: 0}", "evaluate.limit", ">= 1 or null"),
        ("pipeline: {verify: {retries: -1}}", "pipeline.verify.retries", "from 0 to 20"),
    ],
)
def test_out_of_range_setting_is_one_line_exit_2(tmp_path: Path, capsys, yaml_text, field, allowed):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml_text + "\n")
    assert main(["--config", str(cfg), "decide", "--history", str(tmp_path / "h.json")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"config error: {cfg}: {field}: invalid value") and allowed in line, line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"sft:\n  lr: 0.1\n  lr: 0.2\n", "line 3: duplicate key 'lr'"),
        (b"decide: {max_cycles: 2}\ndecide: {max_cycles: 5}\n", "line 2: duplicate key 'decide'"),
        (b"sft: {lr: 0.1\n", "not valid YAML at line"),
        (b"sft: {lr: 0.1}  # caf\xe9\n", "not UTF-8 text"),
    ],
)
def test_unreadable_config_is_one_line_exit_2(tmp_path: Path, capsys, content, message):
    cfg = tmp_path / "run.yaml"
    cfg.write_bytes(content)
    assert main(["--config", str(cfg), "decide", "--history", "h.json"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"config error: {cfg}: ") and message in line, line


def test_config_folder_is_one_line_exit_2(tmp_path: Path, capsys):
    assert main(["--config", str(tmp_path), "decide", "--history", "h.json"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"config error: {tmp_path}: is a folder, not a config file"]


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every runnable subcommand: (its words, its parser)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaves(child, (*path, name))


def _valid_args(parser: argparse.ArgumentParser) -> list[str]:
    """Placeholder values for the required options and positionals."""
    args: list[str] = []
    for a in parser._actions:
        if a.required or (not a.option_strings and a.dest != "help"):
            value = "1" if isinstance(a.type, type(int_at_least(0))) else "x"
            args += [*a.option_strings[:1], next(iter(a.choices)) if a.choices else value]
    return args


def _bad_arguments():
    """Per subcommand: an unknown option, and each checked number out of its range."""
    for words, parser in _leaves(build_parser()):
        yield pytest.param(words, [*_valid_args(parser), "--no-such-option"], "unrecognized arguments",
                           id=" ".join(words) + " unknown")
        for a in parser._actions:
            if a.option_strings and callable(a.type) and a.type is not str:
                yield pytest.param(words, [*_valid_args(parser), a.option_strings[0], "-5"],
                                   f"argument {'/'.join(a.option_strings)}: -5",
                                   id=f"{' '.join(words)} {a.option_strings[0]}")


@pytest.mark.parametrize(("words", "args", "message"), list(_bad_arguments()))
def test_every_subcommand_refuses_a_bad_argument_in_one_line(capsys, tmp_path, monkeypatch, words, args,
                                                             message):
    monkeypatch.chdir(tmp_path)  # the placeholder paths ("x") of a command that runs land here
    with pytest.raises(SystemExit) as exit_:
        main([*words, *args])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    # an unknown option is the top parser's error, a bad value the subcommand's
    assert line.startswith("videostar") and ": error: " in line and message in line, line


@pytest.mark.parametrize("command", ["generate", "rationalize"])
def test_shard_outside_num_shards_is_one_line_exit_2(tmp_path: Path, capsys, command):
    data = "--data" if command == "generate" else "--rejected"
    args = [command, "--model", "m", data, "r.jsonl", "--out", str(tmp_path), "--shard", "2",
            "--num-shards", "2"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "config error: shard: 2 of 2 shards (allowed: num_shards >= 1, shard in 0..num_shards-1)"]
