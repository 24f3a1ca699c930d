"""Shared by the components' own tests (components/*/tests): what a component looks like to KFP.

Test-only: setup.py leaves it out of the wheel."""

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

