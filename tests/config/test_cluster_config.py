"""Fault suite: Kubernetes-side settings a cluster would refuse at submit time are refused when
the config loads, through the real CLI: ``videostar --config bad.yaml pipeline compile`` exits 2
with one line naming the key, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from videostar.cli import main

pytestmark = [pytest.mark.fast, pytest.mark.faults]

TRAINJOB = "pipeline: {pvc: shared, sft: {launcher: {kind: trainjob, %s}}}"


@pytest.mark.parametrize(
    ("yaml_text", "field", "rule"),
    [
        # DNS-1123 names
        ("pipeline: {pvc: Bad_PVC!}", "pipeline.pvc", "DNS-1123 name"),
        (TRAINJOB % "namespace: Bad_NS!", "pipeline.sft.launcher.namespace", "DNS-1123 label"),
        ("pipeline: {secrets: [{secret: My_Secret, env: {A: a}}]}", "pipeline.secrets[0].secret",
         "DNS-1123 name"),
        ("pipeline: {name: My Pipeline}", "pipeline.name", "KFP pipeline name"),
        # labels
        ("pipeline: {generate: {node_selector: {'bad key!': gpu}}}",
         "pipeline.generate.node_selector.bad key!", "label key"),
        ("pipeline: {generate: {node_selector: {pool: 'not ok'}}}", "pipeline.generate.node_selector.pool",
         "label value"),
        # env-var names and Secret keys
        ("pipeline: {secrets: [{secret: s3, env: {'1-BAD NAME': key}}]}",
         "pipeline.secrets[0].env.1-BAD NAME", "environment variable name"),
        ("pipeline: {secrets: [{secret: s3, env: {GOOD: 'bad key'}}]}", "pipeline.secrets[0].env.GOOD",
         "Secret key"),
        # tolerations
        ("pipeline: {sft: {tolerations: [{key: gpu, operator: Maybe}]}}",
         "pipeline.sft.tolerations[0].operator", "Exists or Equal"),
        ("pipeline: {sft: {tolerations: [{key: gpu, effect: Sometimes}]}}",
         "pipeline.sft.tolerations[0].effect", "NoSchedule"),
        ("pipeline: {sft: {tolerations: [{key: gpu, operator: Exists, value: x}]}}",
         "pipeline.sft.tolerations[0].value", "empty with operator Exists"),
        # quantities: the step's, and the TrainJob's per node
        ("pipeline: {sft: {memory: lots}}", "pipeline.sft.memory", "Kubernetes quantity > 0"),
        ("pipeline: {sft: {cpu: '-3'}}", "pipeline.sft.cpu", "Kubernetes quantity > 0"),
        ("pipeline: {sft: {memory: 1.5Gi}}", "pipeline.sft.memory", "Kubernetes quantity"),  # KFP refuses it
        ("pipeline: {sft: {shm_size: ' 16Gi'}}", "pipeline.sft.shm_size", "Kubernetes quantity"),
        (TRAINJOB % "resources_per_node: {cpu: banana}", "pipeline.sft.launcher.resources_per_node.cpu",
         "Kubernetes quantity > 0"),
        (TRAINJOB % "resources_per_node: {nvidia.com/gpu: '0.5'}",
         "pipeline.sft.launcher.resources_per_node.nvidia.com/gpu", "whole number"),
        (TRAINJOB % "resources_per_node: {gpus: '1'}", "pipeline.sft.launcher.resources_per_node.gpus",
         "extended resource"),
        ("pipeline: {sft: {accelerator_type: 'nvidia gpu'}}", "pipeline.sft.accelerator_type",
         "nvidia.com/gpu"),
        # images
        ("pipeline: {images: {gpu: ''}}", "pipeline.images.gpu", "image reference"),
        ("pipeline: {images: {cpu: x y}}", "pipeline.images.cpu", "image reference"),
        # bounded counts and finite durations
        (TRAINJOB % "procs_per_node: 100000", "pipeline.sft.launcher.procs_per_node", "from 1 to 64"),
        (TRAINJOB % "num_nodes: 0", "pipeline.sft.launcher.num_nodes", "from 1 to 1024"),
        ("pipeline: {sft: {accelerator_count: 1000}}", "pipeline.sft.accelerator_count", "from 0 to 64"),
        ("pipeline: {decide: {retries: 1000}}", "pipeline.decide.retries", "from 0 to 20"),
        ("pipeline: {decide: {backoff: soon}}", "pipeline.decide.backoff", "duration"),
        ("pipeline: {decide: {backoff: 2h}}", "pipeline.decide.backoff", "from 0s to 3600s"),
        (TRAINJOB % "poll_seconds: .inf", "pipeline.sft.launcher.poll_seconds", "a finite number"),
        ("pipeline: {num_shards: 100000}", "pipeline.num_shards", "from 1 to 1024"),
        ("pipeline: {pvc_mount: data}", "pipeline.pvc_mount", "absolute path"),
    ],
)
def test_cluster_setting_refused_at_compile(tmp_path: Path, capsys, yaml_text: str, field: str, rule: str):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text + "\n")
    out = tmp_path / "pipeline.yaml"
    assert main(["--config", str(cfg), "pipeline", "compile", "-o", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"config error: {cfg}: {field}: invalid value") and rule in line, line
    assert not out.exists()


@pytest.mark.parametrize(("yaml_text", "field", "rule"), [
    ("rlaif: {ppo: {seed: 4294967296}}", "rlaif.ppo.seed", "from 0 to 4294967295"),
    ("sft: {seed: 18446744073709551616}", "sft.seed", "from 0 to 4294967295"),
    ("scenegraph: {max_questions: -1}", "scenegraph.max_questions", ">= 1 or null"),
    ("decide: {metric: total_yeild}", "decide.metric", "one of total_yield"),
    ("decide: {metric: eval.kinetics700.accuracy}", "decide.metric", "needs the kinetics700 suite"),
    ("generate: {max_new_tokens: 1e400}", "generate.max_new_tokens", "expected int"),
])
def test_number_or_metric_refused_at_load(tmp_path: Path, capsys, yaml_text: str, field: str, rule: str):
    """Settings that used to fail only after a model loaded, or after a whole cycle."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text + "\n")
    assert main(["--config", str(cfg), "pipeline", "compile", "-o", str(tmp_path / "p.yaml")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{field}: " in line and rule in line, line


def test_valid_cluster_settings_compile(tmp_path: Path, capsys):
    """The forms a cluster takes still load: Equal tolerations, millicores, binary suffixes,
    registry ports and digests, qualified label keys."""
    cfg = tmp_path / "good.yaml"
    cfg.write_text(
        "pipeline:\n"
        "  pvc: videos.shared\n"
        "  images: {gpu: 'registry.local:5000/team/videostar-gpu:1.0@sha256:" + "a" * 64 + "'}\n"
        "  generate:\n"
        "    cpu: 500m\n    memory: 512Mi\n    shm_size: 1e9\n    backoff: 5m\n"
        "    node_selector: {cloud.google.com/gke-accelerator: nvidia-h100-80gb}\n"
        "    tolerations: [{key: nvidia.com/gpu, operator: Equal, value: present, effect: NoExecute}]\n"
        "  sft:\n"
        "    launcher: {kind: trainjob, namespace: team-a, num_nodes: 2, procs_per_node: 8,\n"
        "               resources_per_node: {cpu: '16', memory: 200Gi, nvidia.com/gpu: '8'}}\n")
    assert main(["--config", str(cfg), "pipeline", "compile", "-o", str(tmp_path / "p.yaml")]) == 0, (
        capsys.readouterr().err)


@pytest.mark.parametrize("value", ["1", "0.5", "500m", ".5", "1e3", "2k", "16Gi", "4K", "1.5Gi", "-3", "8 "])
def test_our_kfp_forms_never_accept_what_kfp_refuses(value: str):
    """The step's cpu and memory go to KFP's setters: what we let through, KFP takes."""
    from kfp.dsl.pipeline_task import PipelineTask

    from videostar.config import kube

    for ours, theirs in ((kube.KFP_CPU, PipelineTask._validate_cpu_request_limit),
                         (kube.KFP_MEMORY, PipelineTask._validate_memory_request_limit)):
        try:
            theirs(None, value)
        except ValueError:
            assert ours.fullmatch(value) is None, (ours.pattern, value)


@pytest.mark.parametrize("value", ["0s", "60s", "5m", "1h"])
def test_backoff_reads_as_kfp_reads_it(value: str):
    from kfp.dsl.structures import convert_duration_to_seconds

    from videostar.config.platform import backoff_seconds

    assert backoff_seconds(value) == convert_duration_to_seconds(value)
