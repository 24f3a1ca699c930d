"""Shared by the components' own tests (components/*/tests): what a component looks like to KFP.

At the repository root rather than in components/, so that it is not installed with the package."""

import subprocess
from pathlib import Path
from typing import Any

import pytest
from kfp import compiler, dsl
from videostar.components import build_component

from videostar.config import Images

IMAGES = Images(gpu="registry.example/videostar-gpu:test", cpu="registry.example/videostar-cpu:test")


def _interface(step: Any, tmp_path: Any) -> tuple[set[str], set[str], str]:
    """The component compiled on its own, as KFP sees it: input names, output names, pool."""
    component = build_component(step, IMAGES)
    compiler.Compiler().compile(component, str(tmp_path / "component.yaml"))
    spec = component.component_spec
    outputs = set(spec.outputs or {})
    image = component.component_spec.implementation.container.image
    return set(spec.inputs or {}), outputs, "gpu" if image == IMAGES.gpu else "cpu"


@pytest.fixture
def interface(tmp_path: Any) -> Any:
    return lambda step: _interface(step, tmp_path)


def artifact(cls: type, path: Any) -> Any:
    return cls(name=path.name, uri=str(path))


@pytest.fixture
def dataset() -> Any:
    """A KFP Dataset artifact at a local path, as kfp.local hands one to a component."""
    return lambda path: artifact(dsl.Dataset, path)


# Tests never write into the repository: the suite fails when `git status` differs at its end.
_TREE = pytest.StashKey[str | None]()


def _tree_status() -> str | None:
    """`git status --porcelain` of this checkout; None outside a git checkout (an sdist, say)."""
    try:
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                              cwd=Path(__file__).parent, capture_output=True, text=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_TREE] = _tree_status()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before, after = session.config.stash.get(_TREE, None), _tree_status()
    if before is None or after is None or after == before:
        return
    changed = sorted(set(after.splitlines()) ^ set(before.splitlines()))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"the tests changed the working tree (git status): {'; '.join(changed)}",
                            red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
