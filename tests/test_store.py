"""Object store against a real S3 server: ``moto_server`` on a free loopback port."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from conftest import free_port

from videostar import store
from videostar.errors import VideostarError


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A small model-like folder with a nested file and a binary file."""
    root = tmp_path / "model"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "config.json").write_text('{"kind": "lora"}')
    (root / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 40)
    (root / "sub" / "deeper" / "notes.txt").write_text("hello")
    return root


def files_of(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name != store.MANIFEST
    }


def put(bucket: str, key: str, data: bytes) -> None:
    store.client().put_object(bucket, key, io.BytesIO(data), len(data))


def test_round_trip_and_cache(bucket: str, folder: Path, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/models/run1"
    keys = store.upload_folder(folder, uri)
    assert sorted(keys) == [
        "models/run1/config.json",
        "models/run1/sub/deeper/notes.txt",
        "models/run1/sub/weights.bin",
    ]

    out = store.download_prefix(uri)
    assert out == tmp_path / "cache" / "s3" / bucket / "models" / "run1"
    assert files_of(out) == files_of(folder)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temp folders left behind"

    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert store.download_prefix(uri) == out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == mtimes  # reused, not re-downloaded

    assert store.upload_folder(folder, uri) == keys  # the same upload again: already published

    put(bucket, "models/run1/config.json", b'{"kind": "FULL"}')  # same size, other bytes
    with pytest.raises(VideostarError, match=r"config.json: SHA-256 \w+ does not match the published"):
        store.download_prefix(uri)
    assert files_of(out) == files_of(folder)  # the earlier download is untouched
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_sibling_prefix_not_included(bucket: str, folder: Path, tmp_path: Path) -> None:
    store.upload_folder(folder, f"s3://{bucket}/m/a")
    put(bucket, "m/ab/other.txt", b"x")
    out = store.download_prefix(f"s3://{bucket}/m/a/", tmp_path / "explicit")
    assert out == tmp_path / "explicit"
    assert files_of(out) == files_of(folder)


def test_upload_refuses_overwrite(bucket: str, folder: Path, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/datasets/v1"
    put(bucket, "datasets/v1/sub/weights.bin", b"existing")
    with pytest.raises(VideostarError, match=r"datasets/v1: holds objects that are not part of this upload"):
        store.upload_folder(folder, uri)
    # nothing was written: the clash was found before any upload, and the claim taken back
    objects = [o.object_name for o in store.client().list_objects(bucket, recursive=True)]
    assert objects == ["datasets/v1/sub/weights.bin"]
    store.upload_folder(folder, f"s3://{bucket}/datasets/v2")
    (folder / "config.json").write_text('{"kind": "full"}')
    with pytest.raises(VideostarError, match=r"datasets/v2: already published with other content"):
        store.upload_folder(folder, f"s3://{bucket}/datasets/v2")


@pytest.mark.parametrize(
    "uri",
    ["http://bucket/x", "s3://", "s3:///prefix", "s3://Bad_Bucket/x", "s3://bucket/a/../b", "s3://b/a//c"],
)
def test_malformed_uri(uri: str) -> None:
    with pytest.raises(VideostarError, match=r"s3://|not an s3"):
        store.parse_s3_uri(uri)
    with pytest.raises(VideostarError):
        store.download_prefix(uri)


def test_parse_s3_uri() -> None:
    assert store.parse_s3_uri("s3://my-bucket/a/b/") == ("my-bucket", "a/b")
    assert store.parse_s3_uri("s3://my-bucket") == ("my-bucket", "")


def test_empty_prefix(bucket: str) -> None:
    uri = f"s3://{bucket}/nothing/here"
    with pytest.raises(VideostarError, match=rf"^{uri}: no objects$"):
        store.download_prefix(uri)


def test_missing_bucket(bucket: str) -> None:
    with pytest.raises(VideostarError, match="NoSuchBucket"):
        store.download_prefix("s3://no-such-bucket-here/x")


def test_escaping_key_refused(bucket: str, moto_endpoint: str, tmp_path: Path) -> None:
    with pytest.raises(VideostarError, match="unsafe path"):
        store._relative("s3://b/p", "p", "p/../evil")
    # minio refuses to write such keys, other S3 clients do not
    boto3 = pytest.importorskip("boto3")
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    s3.put_object(Bucket=bucket, Key="p/../evil", Body=b"x")
    names = [o.object_name for o in store.client().list_objects(bucket, prefix="p/", recursive=True)]
    if names != ["p/../evil"]:
        pytest.skip(f"server normalised the key: {names}")
    with pytest.raises(VideostarError, match="unsafe path"):
        store.download_prefix(f"s3://{bucket}/p", tmp_path / "out" / "p")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil").exists()


def test_corrupt_download_leaves_nothing(bucket: str, folder: Path, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/m"
    store.upload_folder(folder, uri)
    weights = (folder / "sub" / "weights.bin").read_bytes()
    put(bucket, "m/sub/weights.bin", weights[::-1])  # same size, other bytes
    with pytest.raises(VideostarError, match="does not match the published"):
        store.download_prefix(uri, tmp_path / "dl" / "m")
    assert list((tmp_path / "dl").iterdir()) == []


def test_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("VIDEOSTAR_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    start = time.monotonic()
    with pytest.raises(VideostarError) as info:
        store.download_prefix("s3://bucket/prefix", tmp_path / "out")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert endpoint in message and "unreachable" in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_missing_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOSTAR_S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(VideostarError, match=r"^http://127.0.0.1:9: missing credentials"):
        store.download_prefix("s3://bucket/prefix")


def test_settings_from_env() -> None:
    env = {
        "AWS_ENDPOINT_URL": "https://s3.example.com",
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "b",
    }
    settings = store.S3Settings.from_env(env)
    assert settings.host_and_secure() == ("s3.example.com", True)
    env["VIDEOSTAR_S3_ENDPOINT"] = "http://minio:9000"
    assert store.S3Settings.from_env(env).host_and_secure() == ("minio:9000", False)
    with pytest.raises(VideostarError, match="no S3 endpoint"):
        store.S3Settings.from_env({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})


def test_model_resolve_downloads(bucket: str, folder: Path, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/models/tiny"
    store.upload_folder(folder, uri)
    out = store.resolve(uri)
    assert out == tmp_path / "cache" / "s3" / bucket / "models" / "tiny"
    assert files_of(out) == files_of(folder)


def test_scoped_keys_and_local_store(tmp_path: Path):
    assert store.scoped_key("run-1", 2, "sft", "train.jsonl") == "runs/run-1/cycle-2/sft/train.jsonl"
    assert store.scoped_key("run-1", None, "eval", "a/report.json") == "runs/run-1/eval/a/report.json"
    for bad in (("", 0, "sft", "x"), ("r/1", 0, "sft", "x"), ("r", 0, "sft", "../x")):
        with pytest.raises(VideostarError):
            store.scoped_key(*bad)
    local = store.open_store(str(tmp_path / "store"))
    local.check()
    src = tmp_path / "train.jsonl"
    src.write_text("{}\n")
    uri = local.publish(src, "runs/r/cycle-0/sft/train.jsonl")
    assert uri == (tmp_path / "store/runs/r/cycle-0/sft/train.jsonl").as_uri()
    assert local.publish(src, "runs/r/cycle-0/sft/train.jsonl") == uri  # a retried step: same content
    src.write_text("changed\n")
    with pytest.raises(VideostarError, match="already exists with other content, refusing to overwrite"):
        local.publish(src, "runs/r/cycle-0/sft/train.jsonl")
    assert (tmp_path / "store/runs/r/cycle-0/sft/train.jsonl").read_text() == "{}\n"


def test_s3_store_creates_its_bucket_and_never_overwrites(bucket: str, tmp_path: Path):
    s3 = store.open_store(f"s3://{bucket}-new/prefix")
    s3.check()  # creates the missing bucket
    src = tmp_path / "a.txt"
    src.write_text("one")
    assert s3.publish(src, "runs/r/cycle-0/sft/a.txt") == f"s3://{bucket}-new/prefix/runs/r/cycle-0/sft/a.txt"
    assert s3.publish(src, "runs/r/cycle-0/sft/a.txt") == f"s3://{bucket}-new/prefix/runs/r/cycle-0/sft/a.txt"
    src.write_text("two")
    with pytest.raises(VideostarError, match="already exists with other content, refusing to overwrite"):
        s3.publish(src, "runs/r/cycle-0/sft/a.txt")
    out = store.download_object(f"s3://{bucket}-new/prefix/runs/r/cycle-0/sft/a.txt")
    assert out.read_text() == "one" and [p.name for p in out.parent.iterdir()] == ["a.txt"]
