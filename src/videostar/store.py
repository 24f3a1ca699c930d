"""Object store: ``s3://bucket/prefix`` folders on any S3-compatible server (MinIO, SeaweedFS, AWS).

Models and datasets travel between pipeline steps as *folders* under a prefix. Downloads land in a
local cache atomically and are verified, so a step never reads a half-written or corrupt folder;
uploads never overwrite, so a published model or dataset is immutable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import certifi
import minio
import urllib3
from minio.datatypes import Object
from minio.error import MinioException, S3Error

from videostar.errors import VideostarError
from videostar.outputs import publish_mode

ENDPOINT_VARS = ("VIDEOSTAR_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
MANIFEST = ".videostar-manifest.json"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class S3Settings:
    """Where the store is and how to reach it; timeouts and retries are small so failures are fast."""

    endpoint: str  # as configured, e.g. "http://127.0.0.1:9000"
    access_key: str
    secret_key: str
    session_token: str | None = None
    region: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    retries: int = 3

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> S3Settings:
        """Read the endpoint and credentials from the environment, the way KFP secrets inject them."""
        env = dict(os.environ if env is None else env)
        endpoint = next((env[k] for k in ENDPOINT_VARS if env.get(k)), "")
        if not endpoint:
            raise VideostarError(f"no S3 endpoint: set {' or '.join(ENDPOINT_VARS)}")
        access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            raise VideostarError(
                f"{endpoint}: missing credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or None
        return cls(endpoint, access, secret, env.get("AWS_SESSION_TOKEN") or None, region)

    def host_and_secure(self) -> tuple[str, bool]:
        """``host[:port]`` and TLS flag; the scheme decides TLS (no scheme means https)."""
        parts = urlsplit(self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}")
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
            raise VideostarError(f"{self.endpoint}: bad S3 endpoint, expected e.g. http://host:9000")
        return parts.netloc, parts.scheme == "https"


def client(settings: S3Settings | None = None) -> minio.Minio:
    """A minio client with bounded timeouts and retries, so an unreachable store fails in seconds."""
    settings = settings or S3Settings.from_env()
    host, secure = settings.host_and_secure()
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout),
        retries=urllib3.Retry(
            total=settings.retries, backoff_factor=0.1, status_forcelist=(500, 502, 503, 504)
        ),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )
    return minio.Minio(
        host,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        session_token=settings.session_token,
        secure=secure,
        region=settings.region,
        http_client=http,
    )


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> ``("bucket", "a/b")``; rejects what could not name a safe folder."""
    if not uri.startswith("s3://"):
        raise VideostarError(f"{uri}: not an s3:// URI")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise VideostarError(f"{uri}: bad bucket name {bucket!r}")
    prefix = prefix.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise VideostarError(f"{uri}: bad prefix {prefix!r} (empty, '.' or '..' path segment)")
    return bucket, prefix


def cache_root() -> Path:
    """Root of downloaded folders: ``$VIDEOSTAR_CACHE`` or ``~/.cache/videostar``."""
    return Path(os.environ.get("VIDEOSTAR_CACHE") or Path.home() / ".cache" / "videostar")


def download_prefix(uri: str, cache_dir: str | Path | None = None) -> Path:
    """Download every object under ``uri`` into ``cache_dir`` and return it.

    ``cache_dir`` is the folder itself (default ``<cache_root>/s3/<bucket>/<prefix>``). A folder
    whose manifest matches the listing is reused; otherwise the objects are fetched into a temp
    folder beside it, verified (size; MD5 when the ETag is one), and renamed into place.
    """
    bucket, prefix = parse_s3_uri(uri)
    target = Path(cache_dir) if cache_dir is not None else cache_root() / "s3" / bucket / prefix
    settings = S3Settings.from_env()
    s3 = client(settings)
    with _errors(settings, uri):
        listing = {
            _relative(uri, prefix, o.object_name or ""): o
            for o in s3.list_objects(bucket, prefix=f"{prefix}/" if prefix else None, recursive=True)
            if not o.is_dir
        }
    if not listing:
        raise VideostarError(f"{uri}: no objects")
    manifest = {
        "uri": f"s3://{bucket}/{prefix}",
        "objects": {rel: [o.etag, o.size] for rel, o in sorted(listing.items())},
    }
    if _complete(target, manifest):
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.part-", dir=target.parent))
    try:
        with _errors(settings, uri):
            for rel, obj in listing.items():
                _fetch(s3, uri, obj, tmp / rel)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        publish_mode(tmp)
        _swap_in(tmp, target, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def upload_folder(folder: str | Path, uri: str) -> list[str]:
    """Publish the files of ``folder`` under ``uri``; returns the keys.

    Every key is checked before any is written, so a name clash leaves the store untouched:
    published models and datasets are immutable, a new version needs a new prefix.
    """
    folder = Path(folder)
    bucket, prefix = parse_s3_uri(uri)
    if not folder.is_dir():
        raise VideostarError(f"{folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    if not files:
        raise VideostarError(f"{folder}: no files to upload")
    keys = [str(PurePosixPath(prefix, p.relative_to(folder).as_posix())).lstrip("/") for p in files]
    settings = S3Settings.from_env()
    s3 = client(settings)
    with _errors(settings, uri):
        for key in keys:
            if _exists(s3, bucket, key):
                raise VideostarError(f"s3://{bucket}/{key}: already exists, refusing to overwrite")
        for key, path in zip(keys, files, strict=True):
            s3.fput_object(bucket, key, str(path))
    return keys


def _relative(uri: str, prefix: str, key: str) -> str:
    """The key's path below the prefix; refuses keys that would land outside the target folder."""
    rel = key[len(prefix) + 1 :] if prefix else key
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or rel == MANIFEST:
        raise VideostarError(f"{uri}: refusing object {key!r}: unsafe path below the prefix")
    return rel


def _complete(target: Path, manifest: dict) -> bool:
    """True if ``target`` holds exactly the listed objects (same ETags and sizes) from an earlier download."""
    try:
        if json.loads((target / MANIFEST).read_text()) != manifest:
            return False
    except (OSError, ValueError):
        return False
    return all(
        (target / rel).is_file() and (target / rel).stat().st_size == size
        for rel, (_, size) in manifest["objects"].items()
    )


def _fetch(s3: minio.Minio, uri: str, obj: Object, dest: Path) -> None:
    """Stream one object to ``dest`` and check it against the listing's size and (single-part) ETag."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    response = s3.get_object(obj.bucket_name, obj.object_name or "")
    try:
        with dest.open("wb") as f:
            for chunk in response.stream(_CHUNK):
                f.write(chunk)
                md5.update(chunk)
                size += len(chunk)
    finally:
        response.close()
        response.release_conn()
    etag = (obj.etag or "").lower()
    if size != obj.size:
        raise VideostarError(f"{uri}: {obj.object_name}: got {size} bytes, expected {obj.size}")
    if re.fullmatch(r"[0-9a-f]{32}", etag) and md5.hexdigest() != etag:
        raise VideostarError(f"{uri}: {obj.object_name}: MD5 {md5.hexdigest()} does not match ETag {etag}")


def _swap_in(tmp: Path, target: Path, manifest: dict) -> None:
    """Rename ``tmp`` to ``target``, replacing a stale folder; a concurrent complete copy wins."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{tmp.name[-8:]}")
        target.rename(old)
    try:
        tmp.rename(target)
    except OSError:
        if not _complete(target, manifest):
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _exists(s3: minio.Minio, bucket: str, key: str) -> bool:
    try:
        s3.stat_object(bucket, key)
    except S3Error as e:
        if e.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
            return False
        raise
    return True


@contextlib.contextmanager
def _errors(settings: S3Settings, uri: str) -> Iterator[None]:
    """Turn client and network failures into one line naming the URI, the endpoint and the cause."""
    try:
        yield
    except S3Error as e:
        raise VideostarError(f"{uri} at {settings.endpoint}: {e.code}: {e.message}") from e
    except urllib3.exceptions.HTTPError as e:
        cause = getattr(e, "reason", None) or e
        text = re.sub(r"^(<[^>]*>|\w+\(host=[^)]*\)):\s*", "", str(cause)).splitlines()[0]
        raise VideostarError(f"{uri}: S3 endpoint {settings.endpoint} unreachable: {text}") from e
    except (MinioException, ValueError) as e:
        raise VideostarError(f"{uri} at {settings.endpoint}: {str(e).splitlines()[0]}") from e


def scoped_key(run: str, cycle: int | None, step: str, name: str) -> str:
    """``runs/{run}/cycle-{k}/{step}/{name}``: every output of a run lives under its own keys."""
    parts = ["runs", run] + ([f"cycle-{cycle}"] if cycle is not None else []) + [step]
    if any(not p or "/" in p or p in (".", "..") for p in parts):
        raise VideostarError(f"bad key part in {parts!r}")
    if any(seg in ("", ".", "..") for seg in name.split("/")):
        raise VideostarError(f"bad object name {name!r}")
    return "/".join([*parts, name])


class Store:
    """Immutable run outputs: ``publish`` copies a file or folder under a key, never overwriting."""

    def uri(self, key: str) -> str:
        raise NotImplementedError

    def check(self) -> None:
        """Fail fast, with one line, when the store cannot be reached or written."""
        raise NotImplementedError

    def publish(self, local: str | Path, key: str) -> str:
        raise NotImplementedError


class LocalStore(Store):
    """The embedded default: a folder on local disk with the same keys and the same rules."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def uri(self, key: str) -> str:
        return (self.root / key).as_uri()

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VideostarError(f"{self.root}: store folder not writable ({exc.strerror})") from exc

    def publish(self, local: str | Path, key: str) -> str:
        src, dest = Path(local), self.root / key
        if dest.exists():
            raise VideostarError(f"{self.uri(key)}: already exists, refusing to overwrite")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
        if src.is_dir():
            shutil.copytree(src, tmp)
        else:
            shutil.copy2(src, tmp)
        tmp.rename(dest)
        return self.uri(key)


class S3Store(Store):
    """A bucket (created when missing) and an optional prefix on any S3-compatible server."""

    def __init__(self, uri: str):
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.settings = S3Settings.from_env()
        self.s3 = client(self.settings)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def check(self) -> None:
        with _errors(self.settings, f"s3://{self.bucket}"):
            if not self.s3.bucket_exists(self.bucket):
                self.s3.make_bucket(self.bucket)

    def publish(self, local: str | Path, key: str) -> str:
        local = Path(local)
        if local.is_dir():
            upload_folder(local, self.uri(key))
            return self.uri(key)
        with _errors(self.settings, self.uri(key)):
            if _exists(self.s3, self.bucket, self._key(key)):
                raise VideostarError(f"{self.uri(key)}: already exists, refusing to overwrite")
            self.s3.fput_object(self.bucket, self._key(key), str(local))
        return self.uri(key)


def open_store(uri: str) -> Store:
    """``s3://bucket[/prefix]`` or a local folder."""
    return S3Store(uri) if uri.startswith("s3://") else LocalStore(uri.removeprefix("file://"))
