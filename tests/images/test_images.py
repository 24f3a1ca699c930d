"""The step images' builds, replayed without a Docker engine (none runs on our machines).

For each ``images/<name>.Dockerfile`` the build context is computed from its
``<name>.Dockerfile.dockerignore`` as BuildKit would, the builder stage's ``COPY`` steps are replayed
from that context into a temporary root, and its ``pip wheel`` step builds the wheel there; the
wheel goes into a fresh venv (dependencies reused from this one through a ``.pth`` line, nothing
downloaded), which then runs the image's smoke commands (``python -m videostar.install_check``,
``videostar --help``) from outside the checkout. A path the install needs that the .dockerignore
leaves out fails here as it would fail the image build. The Dockerfiles are parsed, not restated:
change a ``COPY`` or the wheel step and this test follows.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import docker.utils.build as dockerbuild  # docker-py's port of Docker's own .dockerignore matcher
import pytest
from conftest import REPO as ROOT
from conftest import install_wheel

IMAGES = ROOT / "images"
NAMES = ("gpu", "cpu", "vllm")
SMOKE = (("python", "-m", "videostar.install_check"), ("videostar", "--help"))
"""The commands each builder runs on the installed wheel; the replay runs them too."""


class BuildFailed(Exception):
    """The replayed image build stops here, as ``docker build`` would."""


# ---- the build context: .dockerignore as Docker reads it ------------------------------------------

def read_dockerignore(path: Path) -> list[str]:
    """The patterns of a .dockerignore as Docker's ``ignorefile.ReadAll`` reads them: lines starting
    with ``#`` are comments, blank lines are skipped, each pattern is trimmed and cleaned (Go's
    ``filepath.Clean``) and loses a leading ``/``; a leading ``!`` makes it an exception."""
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if i == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = posixpath.normpath(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        out.append(f"!{pattern}" if invert else pattern)
    return out


def build_context(root: Path, patterns: list[str]) -> set[str]:
    """The files (POSIX paths relative to ``root``) a build with these .dockerignore patterns sends.

    A .dockerignore is not a .gitignore, so pathspec & co. would be wrong: Docker matches each
    pattern against the whole path from the context root with Go's ``filepath.Match`` plus ``**``
    (``*.pyc`` matches top-level files only; git would match it at any depth), a pattern that
    matches a directory excludes everything below it, ``!`` re-includes, and the last matching
    pattern wins. docker-py's ``PatternMatcher`` ports exactly these rules from moby. Its two
    departures cannot change this context: it folds case (no two paths here differ only in case)
    and it always keeps a top-level ``.dockerignore`` (there is none; COPY names its sources).
    """
    matcher = dockerbuild.PatternMatcher(list(patterns))
    return {Path(p).as_posix() for p in matcher.walk(str(root)) if (root / p).is_file()}


# ---- the Dockerfile: instructions, stages, COPY and RUN --------------------------------------------

def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: lines ending in ``\\`` continue on the next one,
    and comment lines are dropped, also inside a continuation (as Docker's parser does)."""
    assert not re.match(r"#\s*escape\s*=", text), "a non-default escape character is not parsed here"
    out, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        word, _, args = (pending + stripped).partition(" ")
        out.append((word.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    return out


def stage(text: str, name: str) -> list[tuple[str, str]]:
    """The instructions of the stage ``FROM ... AS <name>``."""
    found, current = None, None
    for word, args in instructions(text):
        if word == "FROM":
            parts = args.split()
            current = parts[-1] if len(parts) >= 3 and parts[-2].upper() == "AS" else None
            if current == name:
                found = []
            continue
        if current == name:
            found.append((word, args))
    assert found is not None, f"no stage named {name!r}"
    return found


@dataclass
class Copy:
    sources: list[str]
    dest: str
    flags: dict[str, str] = field(default_factory=dict)


def parse_copy(args: str) -> Copy:
    """``COPY [--flag=value ...] <src>... <dest>`` (shell or JSON form)."""
    flags = {}
    while args.startswith("--"):
        flag, _, args = args.partition(" ")
        key, _, value = flag[2:].partition("=")
        flags[key] = value
        args = args.strip()
    paths = json.loads(args) if args.startswith("[") else args.split()
    assert len(paths) >= 2, f"COPY needs a source and a destination: {args}"
    return Copy(paths[:-1], paths[-1], flags)


def commands(run: str) -> list[list[str]]:
    """The simple commands of a RUN line (split at ``&&``, ``||``, ``;``), as shell words."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    out: list[list[str]] = [[]]
    redirect = False
    for token in lexer:
        if token in ("&&", "||", ";"):
            out.append([])
        elif token in (">", ">>", "<"):
            redirect = True  # `videostar --help >/dev/null` is the command `videostar --help`
        elif redirect:
            redirect = False
        else:
            assert not set(token) <= set(";&|<>"), f"shell operator {token!r} is not parsed here"
            out[-1].append(token)
    return [c for c in out if c]


def pip_args(command: list[str]) -> tuple[str, list[str]] | None:
    """(pip subcommand, its arguments) when ``command`` runs pip, else None."""
    if command[:1] == ["pip"] or command[:1] == ["pip3"]:
        rest = command[1:]
    elif command[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]):
        rest = command[3:]
    else:
        return None
    return (rest[0], rest[1:]) if rest else None


def option(args: list[str], *names: str) -> str | None:
    """The value of a pip option given as ``--name value`` or ``--name=value``."""
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def positionals(args: list[str]) -> list[str]:
    """pip's positional arguments (options that take a value skip it)."""
    takes_value = {"-w", "--wheel-dir", "-r", "--requirement", "-c", "--constraint", "-i",
                   "--index-url", "--extra-index-url", "-f", "--find-links", "--python"}
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in takes_value:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


# ---- the replay ---------------------------------------------------------------------------------

def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1", "PIP_NO_INPUT": "1"}


def run(cmd: list[str], what: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env or subprocess_env(), capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise BuildFailed(f"{what} exited with {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}")
    return done


@dataclass
class Replay:
    """The builder stage of one Dockerfile, replayed under ``tmp`` from a given build context."""

    dockerfile: Path
    context: set[str]
    tmp: Path
    workdir: str = "/"
    wheel_dir: Path | None = None
    wheel: Path | None = None
    venv: Path | None = None
    smoked: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def image(self) -> str:
        return self.dockerfile.relative_to(ROOT).as_posix()

    def host(self, path: str) -> Path:
        """Where a path of the image lives under the temporary root."""
        absolute = PurePosixPath(posixpath.normpath(posixpath.join(self.workdir, path)))
        return self.tmp / "root" / absolute.relative_to("/")

    def run_stage(self, name: str = "builder") -> None:
        for word, args in stage(self.dockerfile.read_text(), name):
            if word == "WORKDIR":
                self.workdir = posixpath.join(self.workdir, args)
            elif word in ("COPY", "ADD"):
                step = parse_copy(args)
                if "from" in step.flags:
                    continue  # from another stage or image, not from the build context
                assert word == "COPY", f"{self.image}: ADD {args}: use COPY for the build context"
                self.copy(step, f"{word} {args}")
            elif word == "RUN":
                for command in commands(args):
                    self.run_command(command)
        for what, done in (("a `pip wheel` step", self.wheel_dir),
                           ("a `pip install` of the wheel", self.venv)):
            if done is None:
                raise BuildFailed(f"{self.image}: the {name} stage has no {what}")
        missing = [" ".join(c) for c in SMOKE if c not in self.smoked]
        if missing:
            raise BuildFailed(f"{self.image}: the {name} stage does not run {missing} on the install")

    def copy(self, step: Copy, line: str) -> None:
        """COPY from the build context: a file to ``dest`` (into it when it ends in ``/``), a
        directory's contents into ``dest``; a source the context lacks fails as in BuildKit."""
        assert set(step.flags) <= {"chown", "chmod", "link"}, f"{self.image}: {line}: flags not replayed"
        if len(step.sources) > 1:
            assert step.dest.endswith("/"), f"{self.image}: {line}: several sources need a dest/"
        for source in step.sources:
            assert not re.search(r"[*?\[$]", source), \
                f"{self.image}: {line}: wildcards and variables are not replayed"
            rel = posixpath.normpath(source.lstrip("/"))
            if rel in self.context:
                target = self.host(step.dest)
                if step.dest.endswith("/"):
                    target = target / PurePosixPath(rel).name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, target)
                continue
            below = sorted(p for p in self.context if rel == "." or p.startswith(rel + "/"))
            if not below:
                raise BuildFailed(f"{self.image}: {line}: \"/{rel}\": not found — it is not in the build "
                                  "context (the .dockerignore leaves it out, or the checkout lacks it)")
            for path in below:
                target = self.host(step.dest) / posixpath.relpath(path, rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / path, target)

    def run_command(self, command: list[str]) -> None:
        """The builder's wheel build, the install of that wheel and the smoke commands; the rest of
        the stage (apt, torch, DeepSpeed, clean-up) is the base the venv here already stands for."""
        pip = pip_args(command)
        if pip and pip[0] == "wheel":
            self.build_wheel(pip[1])
        elif pip and pip[0] == "install":
            self.install(pip[1])
        elif tuple(command) in SMOKE:
            self.smoke(tuple(command))

    def build_wheel(self, args: list[str]) -> None:
        wheel_dir, sources = option(args, "-w", "--wheel-dir"), positionals(args)
        assert "--no-deps" in args and wheel_dir and len(sources) == 1, \
            f"{self.image}: `pip wheel {' '.join(args)}`: expected --no-deps, a --wheel-dir and one source"
        source = self.host(sources[0])
        if not (source / "pyproject.toml").is_file():
            raise BuildFailed(f"{self.image}: `pip wheel` source {sources[0]} holds no pyproject.toml")
        self.wheel_dir = self.host(wheel_dir)
        # the image builds in its own venv; here: this venv's setuptools, no index, no build isolation
        run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
             "--no-index", "--wheel-dir", str(self.wheel_dir), str(source)],
            f"{self.image}: `pip wheel {sources[0]}`", cwd=self.tmp)

    def install(self, args: list[str]) -> None:
        targets = positionals(args)
        for target in targets:
            path = target.split("[")[0]
            if path.startswith(("/", ".")) and self.host(path).is_dir():
                raise BuildFailed(f"{self.image}: `pip install {target}` installs a source folder, "
                                  "not the wheel users get")
        wheel_dir = None if self.wheel_dir is None else f"/{self.wheel_dir.relative_to(self.tmp / 'root')}/"
        if wheel_dir is None or not any(wheel_dir in target for target in targets):
            return  # an install of something else: torch, build tools
        wheels = sorted(self.wheel_dir.glob("*.whl"))
        if len(wheels) != 1:
            raise BuildFailed(f"{self.image}: expected one wheel in the wheel dir, found {wheels}")
        self.wheel, self.venv = wheels[0], self.tmp / "venv"
        try:
            install_wheel(wheels[0], self.venv)
        except AssertionError as exc:
            raise BuildFailed(f"{self.image}: `pip install {wheels[0].name}`: {exc}") from exc

    def smoke(self, command: tuple[str, ...]) -> None:
        if self.venv is None:
            raise BuildFailed(f"{self.image}: `{' '.join(command)}` runs before the wheel is installed")
        env = subprocess_env()
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        outside = self.tmp / "elsewhere"  # not the checkout, not the copied sources
        outside.mkdir(exist_ok=True)
        done = run([str(self.venv / "bin" / command[0]), *command[1:]],
                   f"{self.image}: `{' '.join(command)}`", cwd=outside, env=env)
        if command == SMOKE[0]:
            # the installed copy answered, not the checkout
            assert f"at {self.venv}" in done.stdout, done.stdout
        self.smoked.append(command)


def replay(name: str, tmp: Path, dockerignore: Path | None = None) -> Replay:
    dockerfile = IMAGES / f"{name}.Dockerfile"
    ignore = dockerignore or IMAGES / f"{name}.Dockerfile.dockerignore"
    done = Replay(dockerfile, build_context(ROOT, read_dockerignore(ignore)), tmp)
    done.run_stage()
    return done


def missing_from(wheel: Path, release: set[str]) -> list[str]:
    """The files of the release wheel that ``wheel`` lacks."""
    with zipfile.ZipFile(wheel) as built:
        return sorted(release - set(built.namelist()))


@pytest.fixture(scope="module")
def release_wheel(checkout_wheel: Path) -> set[str]:
    """The file names of the wheel built from the whole checkout (conftest: a copy of it)."""
    with zipfile.ZipFile(checkout_wheel) as built:
        names = set(built.namelist())
    assert "videostar/components/runtime.py" in names and "videostar/configs/tiny.yaml" in names
    return names


# ---- tests --------------------------------------------------------------------------------------

def _shipped_not(path: str) -> str | None:
    """Why a path must stay out of the build context, or None."""
    parts = PurePosixPath(path).parts
    if "tests" in parts or parts[-1] == "conftest.py":
        return "a test"
    if "__pycache__" in parts or path.endswith(".pyc"):
        return "a bytecode cache"
    if any(p.endswith(".egg-info") for p in parts) or parts[0] in ("build", "dist"):
        return "a build leftover"
    return None


@pytest.mark.fast
@pytest.mark.parametrize("name", NAMES)
def test_build_context_holds_the_package_sources_and_no_tests(name):
    context = build_context(ROOT, read_dockerignore(IMAGES / f"{name}.Dockerfile.dockerignore"))
    assert not [p for p in context if _shipped_not(p)], "tests, caches or build leftovers are sent"
    copies = [parse_copy(a) for w, a in stage((IMAGES / f"{name}.Dockerfile").read_text(), "builder")
              if w == "COPY" and "--from" not in a]
    sources = {posixpath.normpath(s) for c in copies for s in c.sources}
    assert {"pyproject.toml", "setup.py", "src", "components", "pipelines", "configs"} <= sources
    # every file git tracks in the copied folders is sent, but for the tests
    tracked = subprocess.run(["git", "ls-files", "-z", "--", *sorted(sources)], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split("\0")
    wanted = {p for p in tracked if p and (ROOT / p).is_file() and not _shipped_not(p)}
    assert wanted - context == set()
    # and nothing outside them
    assert {p for p in context if not any(p == s or p.startswith(s + "/") for s in sources)} == set()


@pytest.mark.fast
def test_dockerignore_rules_are_dockers_not_gits(tmp_path):
    """The matcher follows Docker, where gitignore would differ: whole-path matching from the root,
    ``**`` for any depth, directory patterns excluding all below, the last matching line winning."""
    for path in ("a.pyc", "pkg/b.pyc", "pkg/__pycache__/c.pyc", "pkg/sub/d.py", "pkg/tests/t.py",
                 "pkg/sub/tests/t.py", "notes.md", "keep.md", "other/e.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    ignore = tmp_path / "x.dockerignore"
    ignore.write_text("# comment\n*.pyc\n\n  /other/  \n*.md\n!keep.md\npkg/*/tests\n")
    assert read_dockerignore(ignore) == ["*.pyc", "other", "*.md", "!keep.md", "pkg/*/tests"]
    context = build_context(tmp_path, read_dockerignore(ignore))
    # *.pyc only at the top (git: at any depth); pkg/*/tests one level only; keep.md re-included
    assert context == {"pkg/b.pyc", "pkg/__pycache__/c.pyc", "pkg/sub/d.py", "pkg/tests/t.py", "keep.md",
                       "x.dockerignore"}
    ignore.write_text("*\n!pkg/\n**/__pycache__\n**/*.pyc\npkg/**/tests\n!pkg/sub/tests/t.py\n")
    assert build_context(tmp_path, read_dockerignore(ignore)) == {"pkg/sub/d.py", "pkg/sub/tests/t.py"}


@pytest.mark.fast
@pytest.mark.parametrize("name", NAMES)
def test_dockerfile_parsing_reads_the_builder_steps(name):
    builder = stage((IMAGES / f"{name}.Dockerfile").read_text(), "builder")
    runs = [c for w, a in builder if w == "RUN" for c in commands(a)]
    wheel = next(pip_args(c)[1] for c in runs if pip_args(c) and pip_args(c)[0] == "wheel")
    assert "--no-deps" in wheel and option(wheel, "-w", "--wheel-dir") and positionals(wheel) == ["/build"]
    installs = [pip_args(c)[1] for c in runs if pip_args(c) and pip_args(c)[0] == "install"]
    sources = [p.split("[")[0].rstrip("/") for a in installs for p in positionals(a)]
    assert "/build" not in sources, "the builder installs the source folder, not the wheel"
    for command in SMOKE:
        assert list(command) in runs, f"the builder does not run {' '.join(command)}"
    assert commands('a "b && c" && d --x=1 >/dev/null; e') == [["a", "b && c"], ["d", "--x=1"], ["e"]]


@pytest.mark.slow  # builds three wheels: the CI tier
@pytest.mark.parametrize("name", NAMES)
def test_builder_installs_a_complete_wheel_from_its_build_context(name, tmp_path, release_wheel):
    before = _build_leftovers()
    done = replay(name, tmp_path)
    assert done.smoked == list(SMOKE)
    # install_check cannot see a module that is not there and that nothing imports: the image's
    # wheel holds every file of the wheel a release builds from the whole checkout
    assert missing_from(done.wheel, release_wheel) == []
    # built from the replayed copy: the checkout gets no build/, dist/ or fresh egg-info
    assert _build_leftovers() == before


def _build_leftovers() -> dict[str, float]:
    """What setuptools writes into a source tree it builds, with modification times (ignored by
    git, so the suite's `git status` check would not see them)."""
    found = [ROOT / "build", ROOT / "dist", *ROOT.glob("*.egg-info"), *ROOT.glob("src/*.egg-info")]
    return {str(p): p.stat().st_mtime for p in found if p.exists()}


@pytest.mark.parametrize("edit, expected", [
    pytest.param(("drop", "!components/"),
                 r"COPY components /build/components: \"/components\": not found",
                 marks=pytest.mark.fast, id="components-left-out"),
    pytest.param(("drop", "!setup.py"),
                 r"COPY pyproject.toml setup.py README.md /build/: \"/setup.py\": not found",
                 marks=pytest.mark.fast, id="setup-py-left-out"),
    pytest.param(("add", "configs/*.yaml"),
                 r"(?s)`python -m videostar.install_check` exited with 1.*package data tiny.yaml is missing",
                 marks=pytest.mark.slow, id="package-data-left-out"),
])
def test_replay_fails_when_the_dockerignore_leaves_out_what_the_build_needs(edit, expected, tmp_path):
    original = IMAGES / "gpu.Dockerfile.dockerignore"
    lines = original.read_text().splitlines()
    action, rule = edit
    if action == "drop":
        assert rule in lines, f"{rule} is no longer in {original.name}"
        lines.remove(rule)
    else:
        lines.append(rule)
    broken = tmp_path / "gpu.Dockerfile.dockerignore"
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(BuildFailed, match=expected):
        replay("gpu", tmp_path / "replay", broken)


@pytest.mark.slow
def test_a_module_left_out_of_the_context_is_missing_from_the_wheel(tmp_path, release_wheel):
    """A module nothing imports at start-up passes install_check when it is left out; the
    comparison with the release wheel catches it."""
    broken = tmp_path / "gpu.Dockerfile.dockerignore"
    broken.write_text((IMAGES / "gpu.Dockerfile.dockerignore").read_text() + "pipelines/local.py\n")
    done = replay("gpu", tmp_path / "replay", broken)
    assert missing_from(done.wheel, release_wheel) == ["videostar/pipelines/local.py"]
