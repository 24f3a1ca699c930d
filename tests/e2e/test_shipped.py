"""As shipped: the wheel users install, installed outside the checkout, runs every step.

An editable install hides a package that the wheel leaves out, so this tier builds the wheel from
a copy of the checkout's files (tracked and untracked, not ignored: what a clean clone has), installs
it non-editable into a fresh venv that reuses the dev venv's dependencies (one ``.pth`` line: nothing
is downloaded, and the dev venv's editable ``videostar`` stays invisible), and runs everything from a
folder outside the repository with that venv's interpreter: every module, every ``--help``, the CLI
from a tiny model to verified answers, and the compiled pipeline YAML through ``kfp.local`` with no
warm runner, as a cluster's launcher would run each task's own command.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import REPO, checkout_files, install_wheel

pytestmark = [pytest.mark.shipped, pytest.mark.slow]

MAPPED = {"src/videostar": "videostar", "components": "videostar/components",
          "pipelines": "videostar/pipelines", "configs": "videostar/configs"}
"""Checkout folder -> where setup.py installs it."""
IMAGES = {"gpu": "registry.example/videostar-gpu:shipped", "cpu": "registry.example/videostar-cpu:shipped"}
PROBE = "VIDEOSTAR_TEST_PROBE"
# Test instrumentation of the shipped venv only (a .pth line runs at every interpreter start): each
# process that exits appends its argv and the videostar it imported, so the test sees which
# interpreter and which install every pipeline task used. (site runs the line with exec() in a
# function: the lambda gets its names as defaults.)
PROBE_PTH = ("import atexit, json, os, sys; p = os.environ.get('" + PROBE + "'); p and atexit.register("
             "lambda p=p, json=json, os=os, sys=sys: open(p, 'a').write(json.dumps([os.getpid(), "
             "sys.executable, sys.argv, getattr(sys.modules.get('videostar'), '__file__', None)]) "
             "+ '\\n'))\n")


@dataclass(frozen=True)
class Shipped:
    wheel: Path
    venv: Path
    work: Path  # a folder outside the repository: every command runs here

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def site(self) -> Path:
        return next((self.venv / "lib").glob("python3*/site-packages"))

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return {**env, "PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(self.venv),
                "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "VIDEOSTAR_PRELOAD": "0", **extra}

    def run(self, *args: str | Path, timeout: float = 900, **env: str) -> str:
        """Run a command of the shipped venv in ``work``; its output, or a failure showing it."""
        proc = subprocess.run([str(a) for a in args], cwd=self.work, env=self.env(**env), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        command = " ".join(map(str, args))
        assert proc.returncode == 0, f"{command} exited {proc.returncode}:\n{proc.stdout[-6000:]}"
        return proc.stdout

    def videostar(self, *args: str | Path, **env: str) -> str:
        return self.run(self.bin / "videostar", *args, **env)


@pytest.fixture(scope="module")
def shipped(checkout_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Shipped:
    """The checkout's wheel installed with no dependencies into a fresh venv (conftest)."""
    root = tmp_path_factory.mktemp("shipped")
    site = install_wheel(checkout_wheel, root / "venv")
    (site / "_videostar_test_probe.pth").write_text(PROBE_PTH)
    (root / "work").mkdir()
    return Shipped(checkout_wheel, root / "venv", root / "work")


def _expected_files() -> set[str]:
    """What the wheel must hold: every module of the mapped folders, less tests, and the data."""
    out = set()
    for name in checkout_files():
        folder = next((f for f in MAPPED if name.startswith(f + "/")), None)
        rel = name[len(folder) + 1:] if folder else ""
        if folder is None or "tests" in Path(rel).parts or Path(rel).name == "conftest.py":
            continue
        if name.endswith(".py") or (folder == "configs" and name.endswith(".yaml")) \
                or name.startswith("src/videostar/training/deepspeed/"):
            out.add(f"{MAPPED[folder]}/{rel}")
    return out


def test_wheel_holds_every_module_and_its_data_and_nothing_test_only(shipped: Shipped):
    names = set(zipfile.ZipFile(shipped.wheel).namelist())
    packaged = {n for n in names if not n.startswith("videostar-")}
    expected = _expected_files()
    assert {"videostar/scenegraph/dataset.py", "videostar/rlaif/__init__.py",
            "videostar/training/deepspeed/zero3.json",
            "videostar/configs/tiny.yaml", "videostar/components/sft/component.py",
            "videostar/pipelines/local.py"} <= expected
    assert sorted(expected - packaged) == [], "missing from the wheel"
    assert sorted(packaged - expected) == [], "in the wheel but not a module or data file of the checkout"
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "videostar = videostar.cli:main" in zipfile.ZipFile(shipped.wheel).read(entry).decode()


def test_every_module_imports_from_the_install(shipped: Shipped):
    out = shipped.run(shipped.bin / "python", "-m", "videostar.install_check")
    assert f"at {shipped.site / 'videostar'}:" in out and out.rstrip().endswith("ok"), out
    script = "import json, videostar.install_check as c; print(json.dumps(c.modules()))"
    listed = json.loads(shipped.run(shipped.bin / "python", "-c", script))
    wheel = {n.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
             for n in zipfile.ZipFile(shipped.wheel).namelist() if n.endswith(".py")}
    mains = {m for m in wheel if m.endswith(".__main__")}  # programs, not imported: run them instead
    assert set(listed) == wheel - mains and mains == {"videostar.cli.__main__"}
    for main in mains:
        assert "usage: videostar" in shipped.run(shipped.bin / "python", "-m", main.removesuffix(".__main__"),
                                                 "--help")
    shipped.run(shipped.bin / "python", "-m", "pip", "check")  # every dependency the wheel declares is there


HELP_SWEEP = """
import argparse, contextlib, io, json, sys
from videostar.cli import build_parser, main

def commands(parser, words=()):
    yield words
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, (*words, name))

done, failed = [], []
for words in commands(build_parser()):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit) as stop:
        main([*words, "--help"])
    text = out.getvalue()
    (done if text.startswith("usage: videostar") else failed).append(" ".join(words))
print(json.dumps({"done": done, "failed": failed}))
"""


def test_every_command_and_subcommand_prints_its_help(shipped: Shipped):
    assert shipped.videostar("--help").startswith("usage: videostar")  # the console script itself
    result = json.loads(shipped.run(shipped.bin / "python", "-c", HELP_SWEEP).strip().splitlines()[-1])
    assert result["failed"] == []
    assert {"model tiny", "data scenegraph-synthetic", "generate", "verify", "ppo", "pipeline compile",
            "config example"} <= set(result["done"])


def test_tiny_model_to_verified_answers_through_the_install(shipped: Shipped):
    shipped.videostar("config", "example", "tiny", "-o", "tiny.yaml")
    assert (shipped.work / "tiny.yaml").read_text() == (REPO / "configs/tiny.yaml").read_text()
    shipped.videostar("model", "tiny", "--pretrain-steps", "60", "--out", "cli/base")
    shipped.videostar("data", "synthetic", "--count", "4", "--seed", "0", "--out", "cli/data")
    shipped.videostar("--config", "tiny.yaml", "generate", "--model", "cli/base",
                      "--data", "cli/data/records.jsonl", "--out", "cli/answers")
    shipped.videostar("--config", "tiny.yaml", "verify", "--answers", "cli/answers/answers.jsonl",
                      "--out", "cli/verified")
    metrics = json.loads((shipped.work / "cli/verified/metrics.json").read_text())
    assert metrics["total"] == 12  # 4 videos x 3 tasks, each answered and judged


def _tasks(probe: Path) -> list[tuple[str, list[str], str | None]]:
    """(interpreter, argv, videostar file) of every KFP executor process the probe saw."""
    lines = probe.read_text().splitlines() if probe.exists() else []
    # by pid: site may read the venv's site-packages twice (lib and its lib64 link)
    rows = {row[0]: row[1:] for row in map(json.loads, lines)}
    return [(exe, argv, where) for exe, argv, where in rows.values()
            if argv and argv[0].endswith("executor_main.py")]


def _check_run(shipped: Shipped, root: Path, probe: Path) -> Path:
    """One run folder; every task ran the compiled YAML's command in the shipped install, and every
    task's image is the configured one for its pool."""
    from videostar.components import STEPS

    (run_dir,) = (p for p in root.iterdir() if p.is_dir())
    spec = next(yaml.safe_load_all((run_dir / "pipeline.yaml").read_text()))
    executors = spec["deploymentSpec"]["executors"]
    pools = {step.__name__.rsplit(".", 1)[-1]: step.component.POOL for step in STEPS}
    functions = {}
    for label, executor in executors.items():
        if "container" not in executor:
            continue  # the importers
        container = executor["container"]
        function = container["args"][container["args"].index("--function_to_execute") + 1]
        assert container["image"] == IMAGES[pools[function]], (label, container["image"])
        functions[label] = function
    tasks = _tasks(probe)
    finished = list(run_dir.rglob("executor_output.json"))
    assert finished and len(tasks) == len(finished), (len(tasks), len(finished))
    for exe, argv, where in tasks:
        assert Path(exe).parent == shipped.bin, exe
        assert where and Path(where).is_relative_to(shipped.site), where
        assert argv[argv.index("--function_to_execute") + 1] in functions.values()
    return run_dir


def test_compiled_pipeline_runs_every_step_from_the_install(shipped: Shipped):
    """One Video-STaR cycle + the RLAIF stage + evaluation, then a STEP cycle with its suite."""
    w = shipped.work
    # pretrained enough that the STEP cycle has verified answers (rationalized ones, mostly) to train on
    shipped.videostar("model", "tiny", "--pretrain-steps", "300", "--scenegraph-videos", "40",
                      "--out", "base")
    shipped.videostar("data", "synthetic", "--count", "6", "--seed", "0", "--out", "data")
    shipped.videostar("data", "synthetic", "--kinetics", "--count", "4", "--seed", "1", "--out", "heldout")
    shipped.videostar("data", "synthetic", "--kinetics", "--count", "4", "--seed", "2", "--out", "validation")
    cfg = yaml.safe_load(shipped.videostar("config", "example", "tiny"))
    cfg["pipeline"] |= {"base_model": "base", "dataset": "data/records.jsonl", "num_shards": 1,
                        "images": IMAGES}
    cfg["decide"]["max_cycles"] = 1
    cfg["sft"]["epochs"] = 1
    cfg["rlaif"]["reward_model"]["epochs"] = 1
    cfg["rlaif"]["ppo"] |= {"steps": 2, "save_every": 0}
    cfg["rlaif"]["grpo"] |= {"steps": 2, "save_every": 0}
    cfg["evaluate"]["suites"][0]["data"] = {"csv": "heldout/validate.csv", "videos": "heldout/videos"}
    cfg["evaluate"]["suites"][1]["data"] = {"csv": "validation/validate.csv", "videos": "validation/videos"}
    cfg["tracking"] = {"mlflow_uri": "sqlite:///star/mlflow.db", "experiment": "shipped",
                       "store": "star/store"}
    (w / "star.yaml").write_text(yaml.safe_dump(cfg))
    probe = w / "star.probe"
    shipped.videostar("--config", "star.yaml", "run", "--local", "--root", "star/runs", **{PROBE: str(probe)})
    run_dir = _check_run(shipped, w / "star/runs", probe)
    functions = {argv[argv.index("--function_to_execute") + 1] for _, argv, _ in _tasks(probe)}
    assert functions == {"start", "generate", "verify", "rationalize", "sft", "evaluate", "decide",
                         "preferences", "reward_model", "grpo"}  # the shipped tiny config's RL
    assert len(list(run_dir.rglob("scores.json"))) == 3  # baseline, cycle 0, after RLAIF

    step = yaml.safe_load(shipped.videostar("config", "example", "scenegraph-tiny"))
    step["pipeline"] |= {"base_model": "base", "dataset": "step/records.jsonl", "images": IMAGES}
    step["decide"]["max_cycles"] = 1
    step["sft"]["epochs"] = 1
    step["verify"]["graph_path_steps"] = 0.34
    step["evaluate"] |= {"max_new_tokens": 32, "limit": 4}
    for suite in step["evaluate"]["suites"]:  # the reported held-out videos and the validation ones
        suite["data"]["records"] = "step-heldout/records.jsonl"
    step["tracking"] = {"mlflow_uri": "sqlite:///stepruns/mlflow.db", "experiment": "shipped-step",
                        "store": "stepruns/store"}
    (w / "step.yaml").write_text(yaml.safe_dump(step))
    for args in (["--count", "6", "--seed", "0", "--out", "step"],
                 ["--count", "4", "--seed", "1", "--min-steps", "1", "--out", "step-heldout"]):
        shipped.videostar("--config", "step.yaml", "data", "scenegraph-synthetic", *args)
    probe = w / "step.probe"
    shipped.videostar("--config", "step.yaml", "run", "--local", "--root", "stepruns/runs",
                      **{PROBE: str(probe)})
    run_dir = _check_run(shipped, w / "stepruns/runs", probe)
    scores = [json.loads(p.read_text()) for p in run_dir.rglob("scores.json")]
    assert sorted(s["stage"] for s in scores) == ["baseline", "cycle"]
    assert all("eval.scenegraph.accuracy" in s["scores"] for s in scores)
