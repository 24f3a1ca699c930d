"""Shared fixtures: real mp4s, the tiny model, synthetic data — all built by the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def gradient_video(frames: int = 24, size: int = 32) -> np.ndarray:
    """Frames whose brightness encodes their index, so sampled indices can be read back."""
    out = np.zeros((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        out[t] = int(t * 255 / max(1, frames - 1))
    return out


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pretrained base, built once per test session through the CLI (about 70 s)."""
    from videostar.cli import main

    out = tmp_path_factory.mktemp("tiny") / "base"
    assert main(["model", "tiny", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 synthetic shape videos x 3 tasks = 144 records; returns records.jsonl."""
    from videostar.cli import main

    out = tmp_path_factory.mktemp("synthetic")
    assert main(["data", "synthetic", "--count", "48", "--seed", "0", "--out", str(out)]) == 0
    return out / "records.jsonl"


TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


def colour_preferences(records: Path) -> list:
    """Synthetic preferences: chosen = the reference naming the true colour, rejected = the same
    text with a wrong colour (one pair per recognition video)."""
    import random

    from videostar.data.records import read_rows
    from videostar.data.synthetic import COLOURS
    from videostar.rlaif.reward_model import Pair

    rng = random.Random(0)
    out = []
    for row in read_rows(records):
        if row["task"] != "action_recognition":
            continue
        colour, ref = row["meta"]["colour"], row["meta"]["reference"]
        wrong = rng.choice([c for c in COLOURS if c != colour])
        out.append(Pair(row["id"], row["video"], row["question"], ref, ref.replace(colour, wrong)))
    return out


def colour_reward_config(seed: int, **overrides):
    """The colour reward model's settings: the fixture's (seed 0) and the other seeds' of
    tests/rlaif/test_reward.py."""
    from videostar.config import LoraConfig, RewardModelConfig

    return RewardModelConfig(lr=1e-3, epochs=16, batch_size=4, seed=seed,
                        lora=LoraConfig(r=32, alpha=64, dropout=0.0), **overrides)


@pytest.fixture(scope="session")
def colour_reward_model(tiny_base: Path, synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """A reward model trained on 32 colour preferences (first 32 videos) -> (folder, metrics)."""
    from videostar.config import VideoConfig
    from videostar.rlaif.reward_model import train_reward_model

    prefs = colour_preferences(synthetic_data)
    out = tmp_path_factory.mktemp("reward") / "model"
    # r 32, 16 epochs: the demo base names the look-alike colour more often than not, and the
    # reward model has to learn past that bias (r 8, 8 epochs: 0.625 held-out)
    cfg = colour_reward_config(0)
    metrics = train_reward_model(str(tiny_base), prefs[:32], prefs[32:], out, cfg,
                                 VideoConfig(num_frames=8), progress=False)
    return out, metrics


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(cmd: list[str], url: str, log: Path, timeout: float, env: dict | None = None) -> Iterator[str]:
    """Start a real server, wait (bounded) until ``url`` answers, yield it, stop the server."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{cmd[0]} exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{cmd[0]} did not answer on {url} within {timeout} s")
                time.sleep(0.3)
        yield url.rsplit("/", 1)[0] if url.endswith("/health") else url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 server (moto_server; no MinIO server installs here) on a free loopback port."""
    port = free_port()
    exe = Path(sys.executable).parent / "moto_server"
    yield from serve([str(exe), "-H", "127.0.0.1", "-p", str(port)], f"http://127.0.0.1:{port}",
                     tmp_path_factory.mktemp("moto") / "server.log", 30)


@pytest.fixture
def bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Env pointing at moto with dummy credentials (subprocesses inherit it), a fresh bucket, and
    a private cache root."""
    from videostar import store

    for var in (*store.ENDPOINT_VARS, "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    for key, value in {**S3_ENV, "VIDEOSTAR_S3_ENDPOINT": moto_endpoint,
                       "VIDEOSTAR_CACHE": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(key, value)
    name = f"vs-{uuid.uuid4().hex[:12]}"
    store.client().make_bucket(name)
    return name


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str) -> Iterator[str]:
    """A real ``mlflow server``: sqlite backend, artifacts proxied to s3://mlflow on moto."""
    import minio

    client = minio.Minio(moto_endpoint.removeprefix("http://"), access_key="testing",
                         secret_key="testing", secure=False)
    if not client.bucket_exists("mlflow"):
        client.make_bucket("mlflow")
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {**os.environ, **S3_ENV, "MLFLOW_S3_ENDPOINT_URL": moto_endpoint}
    exe = Path(sys.executable).parent / "mlflow"
    cmd = [str(exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
           "--artifacts-destination", "s3://mlflow", "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}"]
    yield from serve(cmd, f"http://127.0.0.1:{port}/health", root / "server.log", 120, env)


# ---- the wheel users install (tests/e2e/test_shipped.py, tests/images/test_images.py) ----
REPO = Path(__file__).resolve().parents[1]


def checkout_files() -> list[str]:
    """What a clean clone of this checkout holds: tracked files and untracked ones git does not
    ignore (so a new module counts before its commit), relative to the repository."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, capture_output=True, check=True).stdout.decode()
    return [f for f in out.split("\0") if f and (REPO / f).is_file()]


@pytest.fixture(scope="session")
def checkout_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built from a copy of its files (setuptools writes build/ and
    *.egg-info into the tree it builds; tests never write into the repository)."""
    root = tmp_path_factory.mktemp("checkout-wheel")
    for name in checkout_files():
        (root / "source" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "source" / name).write_bytes((REPO / name).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--wheel-dir", str(root / "dist"), str(root / "source")],
                   check=True, cwd=root)
    (wheel,) = (root / "dist").glob("videostar-*.whl")
    return wheel


def install_wheel(wheel: Path, venv: Path) -> Path:
    """Install ``wheel`` with no dependencies into a new venv at ``venv``; returns its site-packages.

    The venv has no pip or setuptools of its own: a ``.pth`` line puts this venv's site-packages
    after its own, so the dependencies are reused and nothing is downloaded. A path line in a
    ``.pth`` does not run that folder's own ``.pth`` files, so this venv's editable ``videostar``
    stays invisible there."""
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    deps = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    (site / "_videostar_test_dependencies.pth").write_text("".join(f"{p}\n" for p in deps))
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                           "--quiet", "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, f"pip install {wheel.name} failed:\n{done.stdout}{done.stderr}"
    return site


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


@pytest.fixture
def finediving(tmp_path: Path) -> dict:
    """A tiny FineDiving release in its real file formats (tests/finediving_release.py), read by the
    adapter tests and the benchmark tests."""
    from finediving_release import write_release

    return write_release(tmp_path)
