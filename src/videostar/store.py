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
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import minio
import urllib3
from minio.datatypes import Object
from minio.error import MinioException, S3Error

from videostar.errors import VideostarError
from videostar.outputs import clean_save_debris, locked, publish_mode, replace_folder

ENDPOINT_VARS = ("VIDEOSTAR_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
MANIFEST = ".videostar-manifest.json"
"""Written last under a published prefix: its files with size and SHA-256. In a downloaded folder,
the same name holds what was downloaded (so an unchanged prefix is not fetched again)."""
CLAIM = ".videostar-claim.json"
"""Written first, only if absent: which upload (by its manifest's SHA-256) owns the prefix."""
RESERVED = (MANIFEST, CLAIM)
SHA256_META = "videostar-sha256"
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
    """Download the folder published under ``uri`` into ``cache_dir`` and return it.

    ``cache_dir`` is the folder itself (default ``<cache_root>/s3/<bucket>/<prefix>``). Only a
    prefix whose manifest (written last by :func:`upload_folder`) lists exactly its objects is
    downloaded; a prefix without one is an unfinished upload. A folder already downloaded from the
    same objects is reused; otherwise the objects are fetched into a temp folder beside it,
    checked against the manifest (size and SHA-256), and swapped in. Temp folders that killed
    downloads left are removed first.
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
        if MANIFEST not in listing:
            raise VideostarError(f"{uri}: no {MANIFEST}: an unfinished upload (rerun it to complete it) "
                                 "or not uploaded by videostar; not downloaded")
        files = _manifest_files(uri, _get_json(s3, bucket, _join(prefix, MANIFEST)))
    objects = {rel: o for rel, o in listing.items() if rel not in RESERVED}
    for rel in sorted(set(files) ^ set(objects)):
        where = "is missing" if rel in files else "is not in its manifest"
        raise VideostarError(f"{uri}: {rel} {where}; not downloaded")
    record = {"uri": f"s3://{bucket}/{prefix}", "files": files,
              "etags": {rel: o.etag for rel, o in sorted(objects.items())}}
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked(target):
        if _complete(target, record):
            return target
        clean_save_debris(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.part-", dir=target.parent))
        try:
            with _errors(settings, uri):
                for rel, obj in objects.items():
                    _fetch(s3, uri, obj, tmp / rel, files[rel])
            (tmp / MANIFEST).write_text(json.dumps(record, indent=1))
            publish_mode(tmp)
            replace_folder(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve(uri: str, cache_dir: str | Path | None = None) -> Path:
    """A local model folder for ``uri``: a path, ``file://`` URI, or ``s3://bucket/prefix`` (downloaded).

    Here, below every loader (the video LMMs, the verifier's sentence encoder), so none of them
    imports another's module to reach a folder.
    """
    if uri.startswith("s3://"):
        return download_prefix(uri, cache_dir)
    path = Path(uri.removeprefix("file://"))
    if not path.is_dir():
        raise VideostarError(f"{uri}: model folder not found")
    return path


def download_object(uri: str) -> Path:
    """One published object (``S3Store.publish`` of a file) at ``<cache_root>/s3/<bucket>/<key>``,
    fetched to a temp file beside it, checked (size; the SHA-256 it was published with, or its
    single-part MD5 ETag) and renamed into place."""
    bucket, key = parse_s3_uri(uri)
    if not key:
        raise VideostarError(f"{uri}: names a bucket, not an object")
    dest = cache_root() / "s3" / bucket / key
    settings = S3Settings.from_env()
    s3 = client(settings)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with locked(dest), _errors(settings, uri):
        obj = s3.stat_object(bucket, key)
        clean_save_debris(dest)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.part-", dir=dest.parent)
        os.close(fd)
        try:
            _fetch(s3, uri, obj, Path(tmp), {"size": obj.size, "sha256": _meta_sha256(obj)})
            publish_mode(tmp)
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return dest


def upload_folder(folder: str | Path, uri: str) -> list[str]:
    """Publish the files of ``folder`` under ``uri``, all or nothing; returns the keys.

    One writer wins a prefix: it first writes a claim object (``If-None-Match: *``, so only one
    claim is ever created) naming the SHA-256 of its manifest, then its files, then the manifest,
    last, which is what makes the prefix published. Another upload of other content is refused
    with one line; an upload of the same content (a rerun after a kill, a retried step) completes
    what is missing, and is a no-op once published. Symlinks that stay inside ``folder`` are
    uploaded as their target's content; any other symlink is refused, never followed.
    """
    folder = Path(folder)
    bucket, prefix = parse_s3_uri(uri)
    if not folder.is_dir():
        raise VideostarError(f"{folder}: not a folder")
    files = _local_files(folder)
    if not files:
        raise VideostarError(f"{folder}: no files to upload")
    manifest = {"format": 1, "files": {rel: {"size": path.stat().st_size, "sha256": _sha256(path)}
                                       for rel, path in files.items()}}
    body = _dump(manifest)
    digest = hashlib.sha256(body).hexdigest()
    keys = [_join(prefix, rel) for rel in files]
    settings = S3Settings.from_env()
    s3 = client(settings)
    with _errors(settings, uri):
        published = _get_json(s3, bucket, _join(prefix, MANIFEST))
        if published is not None:
            if published != manifest:
                raise VideostarError(f"{uri}: already published with other content; refusing to "
                                     "overwrite (a new version needs a new prefix)")
            return keys  # published by an earlier run of the same upload
        claim_key = _join(prefix, CLAIM)
        claim = {"manifest_sha256": digest, "writer": f"{socket.gethostname()}:{os.getpid()}",
                 "started": datetime.now(UTC).isoformat(timespec="seconds")}
        claimed = _put_if_absent(s3, bucket, claim_key, _dump(claim))
        if not claimed:
            held = _get_json(s3, bucket, claim_key) or {}
            if held.get("manifest_sha256") != digest:
                who = f"writer {held.get('writer', '?')}, started {held.get('started', '?')}"
                raise VideostarError(f"{uri}: being published by another upload with other content "
                                     f"({who}); not written")
        done = _uploaded(s3, uri, bucket, prefix, manifest["files"])
        if done is None:
            if claimed:
                s3.remove_object(bucket, claim_key)
            raise VideostarError(f"{uri}: holds objects that are not part of this upload; not written "
                                 "(choose a new prefix)")
        for rel, path in files.items():
            if rel not in done:
                s3.fput_object(bucket, _join(prefix, rel), str(path),
                               metadata={SHA256_META: manifest["files"][rel]["sha256"]})
        if not _put_if_absent(s3, bucket, _join(prefix, MANIFEST), body) and \
                _get_json(s3, bucket, _join(prefix, MANIFEST)) != manifest:
            raise VideostarError(f"{uri}: another upload published other content first; this one is "
                                 "not published")
    return keys


def _local_files(folder: Path) -> dict[str, Path]:
    """The folder's regular files by path below it (the reserved names left out), sorted. A
    symlink is followed only where it stays inside the folder and names a file."""
    root = folder.resolve()
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root) or not target.is_file():
                    raise VideostarError(f"{path}: a symlink to {os.readlink(path)}, outside {folder} or "
                                         "not a file; refusing to upload it")
            if name in filenames:
                rel = path.relative_to(folder).as_posix()
                if not path.is_file():
                    raise VideostarError(f"{path}: not a regular file; refusing to upload it")
                if rel not in RESERVED:
                    found[rel] = path
    return dict(sorted(found.items()))


def _uploaded(s3: minio.Minio, uri: str, bucket: str, prefix: str, files: dict[str, dict]
              ) -> set[str] | None:
    """The files an earlier run of this upload already wrote (same size and SHA-256), or None
    when the prefix holds anything else."""
    done = set()
    for obj in s3.list_objects(bucket, prefix=f"{prefix}/" if prefix else None, recursive=True):
        rel = _relative(uri, prefix, obj.object_name or "")
        if rel in RESERVED or obj.is_dir:
            continue
        if rel not in files or obj.size != files[rel]["size"] or \
                _meta_sha256(s3.stat_object(bucket, obj.object_name or "")) != files[rel]["sha256"]:
            return None
        done.add(rel)
    return done


def _join(prefix: str, rel: str) -> str:
    return f"{prefix}/{rel}" if prefix else rel


def _dump(obj: dict) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True).encode()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _meta_sha256(obj: Object) -> str | None:
    """The SHA-256 an object was published with (user metadata; servers differ in key case)."""
    meta = {k.lower(): v for k, v in (obj.metadata or {}).items()}
    return meta.get(f"x-amz-meta-{SHA256_META}")


def _put_if_absent(s3: minio.Minio, bucket: str, key: str, body: bytes) -> bool:
    """Create ``key`` only if it does not exist (``If-None-Match: *``); False if it did.

    minio 7.2's public ``put_object`` sends every header it does not know as user metadata, so
    the conditional PUT goes through its request method ``_put_object`` (minio is pinned).
    """
    try:
        s3._put_object(bucket, key, body, {"If-None-Match": "*", "Content-Type": "application/json"})
    except S3Error as e:
        if e.code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        raise
    return True


def _get_json(s3: minio.Minio, bucket: str, key: str) -> dict | None:
    """A small JSON object of the store, or None when absent or not a JSON object."""
    try:
        response = s3.get_object(bucket, key)
    except S3Error as e:
        if e.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
            return None
        raise
    try:
        data = json.loads(response.read())
    except ValueError:
        return None
    finally:
        response.close()
        response.release_conn()
    return data if isinstance(data, dict) else None


def _manifest_files(uri: str, manifest: dict | None) -> dict[str, dict]:
    files = (manifest or {}).get("files")
    if not isinstance(files, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str)
            for v in files.values()):
        raise VideostarError(f"{uri}: {MANIFEST} is not a videostar manifest; not downloaded")
    for rel in files:
        _relative(uri, "", rel)
    return files


def _relative(uri: str, prefix: str, key: str) -> str:
    """The key's path below the prefix; refuses keys that would land outside the target folder."""
    rel = key[len(prefix) + 1 :] if prefix else key
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise VideostarError(f"{uri}: refusing object {key!r}: unsafe path below the prefix")
    return rel


def _complete(target: Path, record: dict) -> bool:
    """True if ``target`` holds exactly the listed objects from an earlier download of them."""
    try:
        if json.loads((target / MANIFEST).read_text()) != record:
            return False
    except (OSError, ValueError):
        return False
    return all(
        (target / rel).is_file() and (target / rel).stat().st_size == f["size"]
        for rel, f in record["files"].items()
    )


def _fetch(s3: minio.Minio, uri: str, obj: Object, dest: Path, expected: dict) -> None:
    """Stream one object to ``dest`` and check its size and SHA-256 (or, for an object published
    without one, its single-part MD5 ETag)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    size = 0
    response = s3.get_object(obj.bucket_name, obj.object_name or "")
    try:
        with dest.open("wb") as f:
            for chunk in response.stream(_CHUNK):
                f.write(chunk)
                md5.update(chunk)
                sha.update(chunk)
                size += len(chunk)
    finally:
        response.close()
        response.release_conn()
    etag = (obj.etag or "").lower()
    if size != expected["size"]:
        raise VideostarError(f"{uri}: {obj.object_name}: got {size} bytes, expected {expected['size']}")
    if expected.get("sha256") and sha.hexdigest() != expected["sha256"]:
        raise VideostarError(f"{uri}: {obj.object_name}: SHA-256 {sha.hexdigest()} does not match "
                             f"the published {expected['sha256']}")
    if not expected.get("sha256") and re.fullmatch(r"[0-9a-f]{32}", etag) and md5.hexdigest() != etag:
        raise VideostarError(f"{uri}: {obj.object_name}: MD5 {md5.hexdigest()} does not match ETag {etag}")


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


def _check_key(store: str, key: str) -> str:
    """A store key is a relative path that stays below the store's root."""
    if key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in key.split("/")):
        raise VideostarError(f"{store}: bad key {key!r} (absolute, or an empty, '.' or '..' part)")
    return key


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

    def _path(self, key: str) -> Path:
        """Where ``key`` lives: always below the root (no absolute key, no '..', no symlink out)."""
        dest = self.root.joinpath(*_check_key(str(self.root), key).split("/"))
        existing = next(p for p in dest.parents if p.exists())
        if not existing.resolve().is_relative_to(self.root):
            raise VideostarError(f"{self.root}: key {key!r} leads outside the store (a symlink)")
        return dest

    def publish(self, local: str | Path, key: str) -> str:
        """Copy ``local`` to ``key``; publishing the same content again (a retried step) is a no-op."""
        src, dest = Path(local), self._path(key)
        if dest.exists():
            if _same_content(src, dest):
                return self.uri(key)
            raise VideostarError(f"{self.uri(key)}: already exists with other content, refusing to overwrite")
        dest.parent.mkdir(parents=True, exist_ok=True)
        clean_save_debris(dest)
        tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
        if src.is_dir():
            shutil.copytree(src, tmp)
        else:
            shutil.copy2(src, tmp)
        tmp.rename(dest)
        return self.uri(key)


def _same_content(a: Path, b: Path) -> bool:
    """Two files, or two folders file by file, with the same bytes."""
    if a.is_file() and b.is_file():
        return a.stat().st_size == b.stat().st_size and _sha256(a) == _sha256(b)
    if not (a.is_dir() and b.is_dir()):
        return False
    names = [sorted(p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file()) for top in (a, b)]
    return names[0] == names[1] and all(_same_content(a / n, b / n) for n in names[0])


class S3Store(Store):
    """A bucket (created when missing) and an optional prefix on any S3-compatible server."""

    def __init__(self, uri: str):
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.settings = S3Settings.from_env()
        self.s3 = client(self.settings)

    def _key(self, key: str) -> str:
        return _join(self.prefix, _check_key(f"s3://{self.bucket}", key))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def check(self) -> None:
        with _errors(self.settings, f"s3://{self.bucket}"):
            if not self.s3.bucket_exists(self.bucket):
                self.s3.make_bucket(self.bucket)

    def publish(self, local: str | Path, key: str) -> str:
        """A folder through :func:`upload_folder`; a file as one object (an S3 PUT is atomic), with
        its SHA-256, so publishing the same content again (a retried step) is a no-op."""
        local = Path(local)
        if local.is_dir():
            upload_folder(local, self.uri(key))
            return self.uri(key)
        digest = _sha256(local)
        with _errors(self.settings, self.uri(key)):
            try:
                existing = self.s3.stat_object(self.bucket, self._key(key))
            except S3Error as e:
                if e.code not in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                    raise
                existing = None
            if existing is not None:
                if _meta_sha256(existing) == digest:
                    return self.uri(key)
                raise VideostarError(f"{self.uri(key)}: already exists with other content, refusing to "
                                     "overwrite")
            self.s3.fput_object(self.bucket, self._key(key), str(local), metadata={SHA256_META: digest})
        return self.uri(key)


def open_store(uri: str) -> Store:
    """``s3://bucket[/prefix]`` or a local folder."""
    return S3Store(uri) if uri.startswith("s3://") else LocalStore(uri.removeprefix("file://"))
