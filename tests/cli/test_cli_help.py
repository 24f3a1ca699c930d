"""Every closed choice of the CLI is listed in its ``--help`` (issue 28, item 3).

The whole parser tree is walked: every subcommand level and every argument whose values form a
closed set must name each value in the help of the command it belongs to. The closed sets come
from the code's registries (the tiny-checkpoint builders, the export formats, the shipped example
configs, the STEP release splits), so a family added to ``tiny.BUILDERS`` shows up in
``--help`` with no edit here, and a hand-written list that drifts from its registry fails.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest
from videostar.configs import examples

from videostar import export, layout, tiny
from videostar.cli import build_parser, main
from videostar.config.scenegraph import RELEASE_SPLITS

pytestmark = pytest.mark.fast

REGISTRIES = {
    (("model", "tiny"), "--arch"): lambda: tiny.BUILDERS,
    (("export",), "--format"): lambda: export.FORMATS,
    (("config", "example"), "name"): examples,
    (("data", "action-genome"), "--split"): lambda: RELEASE_SPLITS,
    (("data", "vidor"), "--split"): lambda: RELEASE_SPLITS,
    (("evaluate",), "--stage"): lambda: layout.STAGES,
}
"""Each closed option of the CLI -> the registry that is its one source of truth (read lazily)."""


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command words, parser) for the top level and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, (*path, name))


def name_of(action: argparse.Action) -> str:
    return action.option_strings[-1] if action.option_strings else action.dest


def closed_actions() -> list[tuple[tuple[str, ...], argparse.ArgumentParser, argparse.Action]]:
    return [(path, parser, action) for path, parser in commands(build_parser())
            for action in parser._actions if action.choices is not None]


def test_the_walk_reaches_the_whole_cli():
    paths = {path for path, _ in commands(build_parser())}
    assert {(), ("model", "tiny"), ("export",), ("eval", "scenegraph"), ("pipeline", "submit")} <= paths
    assert len(paths) > 30


@pytest.mark.parametrize("path, parser, action",
                         [pytest.param(*row, id=" ".join([*row[0], name_of(row[2])]))
                          for row in closed_actions()])
def test_every_closed_choice_is_listed_in_help(path, parser, action):
    text = parser.format_help()
    missing = [str(choice) for choice in action.choices if str(choice) not in text]
    assert not missing, f"videostar {' '.join(path)} --help does not name {missing} ({name_of(action)})"


def test_each_closed_option_takes_its_choices_from_its_registry():
    """Every option with a closed set (subcommand levels aside) reads it from a registry, and every
    registry named here is the choices of its option: no hand list that can drift."""
    found = {(path, name_of(action)): action for path, _, action in closed_actions()
             if not isinstance(action, argparse._SubParsersAction)}
    assert set(found) == set(REGISTRIES), "a closed option without its registry here, or a registry " \
                                          "whose option lost its choices="
    for key, registry in REGISTRIES.items():
        assert list(found[key].choices) == list(registry()), key


def test_model_tiny_help_names_every_family(capsys):
    with pytest.raises(SystemExit) as done:
        main(["model", "tiny", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert len(tiny.BUILDERS) == 9
    assert [arch for arch in tiny.BUILDERS if arch not in text] == []


def test_a_value_outside_the_choices_is_one_line_naming_them(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["model", "tiny", "--arch", "qwen9_vl", "--out", str(tmp_path / "m")])
    assert done.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "invalid choice: 'qwen9_vl'" in line and all(arch in line for arch in tiny.BUILDERS)
    assert not (tmp_path / "m").exists()
