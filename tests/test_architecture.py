"""The import architecture: no import circles, no upward imports, thin components.

The contracts are pyproject's ``[tool.importlinter]``; import-linter checks them on grimp's graph
of every import, module-level and in functions. setup.py maps components/, pipelines/ and configs/
into the ``videostar`` namespace, and grimp takes a package's folder from its own location only
for a top-level package, so :class:`MappedPackageFinder` asks the import system (which knows the
mapping) for each root package's folders.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from grimp.application.config import settings as grimp_settings
from grimp.application.ports.filesystem import AbstractFileSystem
from grimp.application.ports.packagefinder import AbstractPackageFinder
from importlinter import configuration
from importlinter.application import use_cases

pytestmark = pytest.mark.fast

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


class MappedPackageFinder(AbstractPackageFinder):
    """A root package's folders as the import system finds them, mapped subpackages included."""

    def determine_package_directories(self, package_name: str, file_system: AbstractFileSystem) -> set[str]:
        spec = importlib.util.find_spec(package_name)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"{package_name} is not an importable package")
        return set(spec.submodule_search_locations)


@pytest.fixture
def mapped_packages() -> Iterator[None]:
    configuration.configure()
    before = grimp_settings.PACKAGE_FINDER
    grimp_settings.configure(PACKAGE_FINDER=MappedPackageFinder())
    yield
    grimp_settings.configure(PACKAGE_FINDER=before)


def test_import_contracts_hold(mapped_packages: None, capsys: pytest.CaptureFixture[str]) -> None:
    # cache_dir=None: import-linter's cache would be written into the checkout
    kept = use_cases.lint_imports(config_filename=str(PYPROJECT), cache_dir=None, no_logo=True,
                                  is_debug_mode=True)
    assert kept, capsys.readouterr().out
