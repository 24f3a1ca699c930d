"""Fault suite: the object store under retries, against a real S3 server on loopback (moto_server):
two writers racing for one prefix, an upload and a download killed part-way, symlinks, and keys
that would leave a local store's root."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from videostar import store
from videostar.errors import VideostarError

pytestmark = [pytest.mark.faults]

UPLOAD = """
import sys, time, pathlib
from videostar import store
from videostar.errors import VideostarError
pathlib.Path(sys.argv[4]).touch()
while not pathlib.Path(sys.argv[3]).exists():
    time.sleep(0.001)
try:
    store.upload_folder(sys.argv[1], sys.argv[2])
except VideostarError as exc:
    sys.exit(f"error: {exc}")
print("published")
"""
DOWNLOAD = "import sys; from videostar import store; store.download_prefix(sys.argv[1], sys.argv[2])"


def make_folder(root: Path, n: int, tag: str, size: int = 64) -> Path:
    """``n`` files (in two subfolders) whose bytes depend on ``tag``."""
    for i in range(n):
        path = root / f"part-{i % 2}" / f"f{i:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((f"{tag}:{i}:".encode() * size)[:size])
    return root


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.name != store.MANIFEST}


def keys_under(bucket: str, prefix: str) -> list[str]:
    return sorted(o.object_name for o in store.client().list_objects(bucket, prefix=prefix, recursive=True))


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)


def test_two_writers_one_wins(bucket: str, tmp_path: Path):
    """Two processes upload other content to one prefix at the same moment: one publishes, the
    other is refused with one line, and the prefix holds the winner's files only."""
    folders = [make_folder(tmp_path / tag, 40, tag) for tag in ("a", "b")]
    uri, go = f"s3://{bucket}/models/m", tmp_path / "go"
    ready = [tmp_path / f"{f.name}.ready" for f in folders]
    procs = [subprocess.Popen([sys.executable, "-c", UPLOAD, str(f), uri, str(go), str(r)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for f, r in zip(folders, ready, strict=True)]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready):  # both past their imports, then both go at once
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.touch()
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    winner = [f for f, r in zip(folders, results, strict=True) if r[0] == 0][0]
    (loser_err,) = [r[2] for r in results if r[0] == 1]
    assert loser_err.startswith(f"error: {uri}: ") and len(loser_err.strip().splitlines()) == 1
    assert ("being published by another upload with other content" in loser_err
            or "already published with other content" in loser_err), loser_err
    assert files_of(store.download_prefix(uri, tmp_path / "dl")) == files_of(winner)


def test_killed_upload_is_completed_by_its_rerun(bucket: str, tmp_path: Path, capsys):
    """SIGKILL part-way through an upload of 300 files: the prefix is not downloadable (no
    manifest), other content cannot take it, and the same upload rerun completes it."""
    folder = make_folder(tmp_path / "m", 300, "m")
    uri, go = f"s3://{bucket}/data/v1", tmp_path / "go"
    go.touch()
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", UPLOAD, str(folder), uri, str(go), str(ready)])
    wait_for(lambda: len(keys_under(bucket, "data/v1/")) > 60, proc)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the upload finished before it could be killed"
    written = len(keys_under(bucket, "data/v1/")) - 1  # the claim
    assert 60 <= written < 300
    with pytest.raises(VideostarError, match=r"no \.videostar-manifest\.json: an unfinished upload"):
        store.download_prefix(uri, tmp_path / "dl")
    assert not (tmp_path / "dl").exists()
    with pytest.raises(VideostarError, match="being published by another upload with other content"):
        store.upload_folder(make_folder(tmp_path / "other", 3, "other"), uri)
    assert len(store.upload_folder(folder, uri)) == 300
    assert files_of(store.download_prefix(uri, tmp_path / "dl")) == files_of(folder)
    assert len(keys_under(bucket, "data/v1/")) == 302  # the files, the claim and the manifest


def test_download_refuses_a_prefix_without_manifest(bucket: str, tmp_path: Path):
    for name in ("a.bin", "b.bin"):
        store.client().put_object(bucket, f"raw/{name}", io.BytesIO(b"x"), 1)
    with pytest.raises(VideostarError, match=rf"^s3://{bucket}/raw: no \.videostar-manifest\.json"):
        store.download_prefix(f"s3://{bucket}/raw", tmp_path / "dl")
    store.upload_folder(make_folder(tmp_path / "m", 2, "m"), f"s3://{bucket}/ok")
    store.client().put_object(bucket, "ok/extra.bin", io.BytesIO(b"x"), 1)
    with pytest.raises(VideostarError, match=rf"^s3://{bucket}/ok: extra.bin is not in its manifest"):
        store.download_prefix(f"s3://{bucket}/ok", tmp_path / "dl")
    assert not (tmp_path / "dl").exists()


def test_killed_download_is_swept_by_the_next(bucket: str, tmp_path: Path, capsys):
    folder = make_folder(tmp_path / "m", 120, "m", size=64 * 1024)
    uri = f"s3://{bucket}/big"
    store.upload_folder(folder, uri)
    target = tmp_path / "cache" / "big"
    proc = subprocess.Popen([sys.executable, "-c", DOWNLOAD, uri, str(target)])
    parts = lambda: [p for p in target.parent.glob(".big.part-*")] if target.parent.exists() else []  # noqa: E731
    wait_for(lambda: any(p.rglob("*.bin") for p in parts()), proc)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the download finished before it could be killed"
    assert parts() and not target.exists()
    assert files_of(store.download_prefix(uri, target)) == files_of(folder)
    assert "cleanup: removed the temp folder of an interrupted save" in capsys.readouterr().err
    assert sorted(p.name for p in target.parent.iterdir()) == ["big"]


def test_symlinks_are_never_followed_out_of_the_folder(bucket: str, tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the store")
    folder = make_folder(tmp_path / "m", 2, "m")
    (folder / "inside.bin").symlink_to("part-0/f000.bin")  # stays inside: uploaded as its content
    store.upload_folder(folder, f"s3://{bucket}/in")
    got = store.download_prefix(f"s3://{bucket}/in", tmp_path / "dl")
    assert (got / "inside.bin").read_bytes() == (folder / "part-0" / "f000.bin").read_bytes()
    assert not (got / "inside.bin").is_symlink()
    for name, target in (("out.txt", secret), ("etc", Path("/etc")), ("dangling", tmp_path / "gone")):
        (folder / name).symlink_to(target)
        with pytest.raises(VideostarError, match=rf"{name}: a symlink to {target}, outside .* not a file"):
            store.upload_folder(folder, f"s3://{bucket}/{name}")
        assert keys_under(bucket, f"{name}/") == []  # refused before anything was written
        (folder / name).unlink()


@pytest.mark.fast
@pytest.mark.parametrize("key", ["../escape.txt", "/tmp/abs.txt", "a/../../b.txt", "a//b.txt", "./a.txt",
                                 "a\\..\\b.txt", ""])
def test_local_store_keys_stay_below_its_root(tmp_path: Path, key: str):
    local = store.LocalStore(tmp_path / "root")
    src = tmp_path / "f.txt"
    src.write_text("x")
    with pytest.raises(VideostarError, match=r"bad key .*absolute, or an empty, '\.' or '\.\.' part"):
        local.publish(src, key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"] and not Path("/tmp/abs.txt").exists()


@pytest.mark.fast
def test_local_store_refuses_a_symlink_out_of_its_root(tmp_path: Path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "runs").symlink_to(outside)
    src = tmp_path / "f.txt"
    src.write_text("x")
    with pytest.raises(VideostarError, match="leads outside the store"):
        store.LocalStore(root).publish(src, "runs/r/f.txt")
    assert list(outside.iterdir()) == []
