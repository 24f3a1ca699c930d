"""Package discovery; everything else about the distribution is in pyproject.toml.

The library lives in src/videostar; the component catalogue (components/), the pipelines
(pipelines/) and the example configs (configs/) are top-level folders installed into the same
namespace, as kubeflow/pipelines-components does, so the step images, ``kfp.local`` and a wheel
user import exactly these files. pyproject's ``packages.find`` discovers one root only, so the
mapped folders are discovered here; tests (``*/tests``) and pytest's ``conftest.py`` stay out.
"""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

MAPPED = {"videostar.components": "components", "videostar.pipelines": "pipelines",
          "videostar.configs": "configs"}

packages = find_packages("src")
for name, folder in MAPPED.items():
    packages += [name, *(f"{name}.{sub}" for sub in find_packages(folder, exclude=["tests", "*.tests"]))]


class BuildPy(build_py):
    """Every module of a package, less pytest's conftest.py (components/conftest.py is test-only)."""

    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        return [m for m in super().find_package_modules(package, package_dir) if m[1] != "conftest"]


setup(packages=packages, package_dir={"": "src", **MAPPED}, cmdclass={"build_py": BuildPy})
