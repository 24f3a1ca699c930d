"""Example run configurations, shipped with the package so that a wheel user has them too.

``videostar config example NAME`` writes one out; in a checkout they are the files beside this one
(``configs/tiny.yaml`` is what ``make demo`` runs).
"""

from importlib import resources


def examples() -> list[str]:
    """The names of the shipped examples (``tiny``, ``scenegraph-tiny``, ...)."""
    return sorted(p.name.removesuffix(".yaml") for p in resources.files(__name__).iterdir()
                  if p.name.endswith(".yaml"))


def example(name: str) -> str:
    """The YAML text of the example ``name``."""
    if name not in examples():
        raise KeyError(f"no example config {name!r}; there are: {', '.join(examples())}")
    return resources.files(__name__).joinpath(f"{name}.yaml").read_text()
