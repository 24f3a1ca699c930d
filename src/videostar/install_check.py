"""Is this install complete? Imports every module of the distribution and opens its package data.

The step images run it at build time (a wheel or image that cannot start its steps fails the build,
not the first cluster run), and the as-shipped tests run it from outside the checkout:
``python -m videostar.install_check``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from importlib import resources

import videostar

PACKAGE_DATA = {"videostar.training.deepspeed": ("zero2.json", "zero3.json"),
                "videostar.configs": ("tiny.yaml", "scenegraph-tiny.yaml", "trainjob-sft-2x8.yaml")}
"""Data files the steps read at run time, per package (pyproject's ``package-data``)."""


def modules() -> list[str]:
    """Every module and package under ``videostar``, as installed here (``__main__`` modules run a
    program when imported, so they are left to the ``--help`` checks)."""
    found = pkgutil.walk_packages(videostar.__path__, "videostar.", onerror=lambda name: None)
    return sorted(["videostar", *(m.name for m in found if not m.name.endswith(".__main__"))])


def problems() -> list[str]:
    """One line per module that does not import and per missing data file."""
    out = []
    for name in modules():
        try:
            importlib.import_module(name)
        except Exception as exc:  # any import failure is a broken install, whatever its type
            last = traceback.format_exception_only(exc)[-1].strip()
            out.append(f"{name}: does not import ({last})")
    for package, files in PACKAGE_DATA.items():
        for file in files:
            if not resources.files(package).joinpath(file).is_file():
                out.append(f"{package}: package data {file} is missing")
    return out


def main() -> int:
    found = problems()
    for line in found:
        print(f"install check: {line}", file=sys.stderr)
    where = videostar.__path__[0]
    print(f"videostar {videostar.__version__} at {where}: {len(modules())} modules, "
          f"{'ok' if not found else f'{len(found)} problems'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
