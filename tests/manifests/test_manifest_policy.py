"""The manifest policy checks catch bad objects (hand-made ones, no render), and the step images
are pinned, non-root and the pipeline's defaults."""

from __future__ import annotations

import copy
import re

import pytest
from manifest_policy import image_problem, load_objects, policy_violations, repo_root, unvalidated, validate

from videostar.config import Images

pytestmark = pytest.mark.fast  # no model, no server: `make test-fast`

ROOT = repo_root()
PIPELINE = ROOT / "manifests" / "base" / "pipeline" / "pipeline.yaml"


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
