"""Compile the pipeline (KFP IR YAML, or Kubernetes-native Pipeline/PipelineVersion for GitOps)
and submit runs to a Kubeflow Pipelines endpoint."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from videostar.config import RunConfig
from videostar.errors import VideostarError, first_line


def compile_pipeline(cfg: RunConfig, out: str | Path, kubernetes_manifest: bool = False,
                     namespace: str | None = None) -> Path:
    """Write the compiled pipeline for ``cfg`` to ``out``."""
    from kfp import compiler
    from kfp.compiler.compiler_utils import KubernetesManifestOptions
    from videostar.pipelines.canonical import canonicalize_documents
    from videostar.pipelines.self_training import build_pipeline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    options = None
    if kubernetes_manifest:
        options = KubernetesManifestOptions(
            pipeline_name=cfg.pipeline.name, pipeline_version_name=version_name(cfg),
            namespace=namespace, include_pipeline_manifest=True,
        )
    compiler.Compiler().compile(build_pipeline(cfg), str(out),
                                kubernetes_manifest_format=kubernetes_manifest,
                                kubernetes_manifest_options=options)
    # libyaml's loader reads the same documents as PyYAML's, several times faster (its dumper
    # formats differently, so PyYAML's writes)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs = canonicalize_documents(list(yaml.load_all(out.read_text(), Loader=loader)))
    out.write_text(yaml.safe_dump_all(docs, sort_keys=True))
    return out


def version_name(cfg: RunConfig) -> str:
    """A PipelineVersion name per content: KFP versions are immutable, so a change needs a new name."""
    import hashlib

    from videostar import __version__
    from videostar.config import config_to_json

    digest = hashlib.sha256(f"{__version__}\n{config_to_json(cfg)}".encode()).hexdigest()[:10]
    return f"{cfg.pipeline.name}-{digest}"


def submit(cfg: RunConfig, host: str, run_name: str | None = None,
           namespace: str | None = None) -> str:
    """Submit one run to the KFP API at ``host``; returns the run's URL in the KFP UI."""
    import kfp

    for field, value in (("pipeline.base_model", cfg.pipeline.base_model),
                         ("pipeline.dataset", cfg.pipeline.dataset)):
        if not value:
            raise VideostarError(f"{field}: set it to the object-store URI the cluster reads")
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(cfg, Path(tmp) / "pipeline.yaml")
        try:
            client = kfp.Client(host=host, namespace=namespace)
            run = client.create_run_from_pipeline_package(
                str(package), arguments={}, run_name=run_name,
                experiment_name=cfg.pipeline.experiment, namespace=namespace,
            )
        except Exception as exc:  # connection errors, auth, API errors: one line each
            raise VideostarError(f"{host}: could not submit the run ({first_line(exc)})") from exc
    return f"{host.rstrip('/')}/#/runs/details/{run.run_id}"
