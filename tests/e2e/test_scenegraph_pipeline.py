"""STEP through the cyclic pipeline: one local run of 2 cycles on synthetic scene-graph videos,
with the held-out step suite before and after, tracked in a real MLflow store (sqlite)."""

from pathlib import Path

import pytest
import yaml
from videostar.pipelines.local import collect

from videostar import layout
from videostar.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.trains]  # cycle 0 trains on what the pretrained base got right

STEP_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "scenegraph-tiny.yaml"


@pytest.fixture(scope="module")
def step_base(tmp_path_factory) -> Path:
    """A STEP base like the demo's (`make demo-scenegraph`), pretrained half as long on half the videos."""
    from videostar.tiny import build_tiny

    out = tmp_path_factory.mktemp("scenegraph-tiny") / "base"
    build_tiny(out, steps=1500, scenegraph_videos=100, progress=False)
    return out


def test_two_cycles_on_synthetic_scene_graph_videos(step_base: Path, tmp_path: Path):
    for args in (["--count", "16", "--seed", "0", "--out", str(tmp_path / "train")],
                 ["--count", "6", "--seed", "1", "--min-steps", "1", "--out", str(tmp_path / "heldout")]):
        assert main(["--config", str(STEP_CONFIG), "data", "scenegraph-synthetic", *args]) == 0
    cfg = yaml.safe_load(STEP_CONFIG.read_text())
    cfg["pipeline"] |= {"base_model": str(step_base), "dataset": str(tmp_path / "train/records.jsonl")}
    cfg["scenegraph"]["max_questions"] = 48
    cfg["sft"]["epochs"] = 1
    # This shorter-trained base rarely states a whole path (the path rule has its own tests):
    # one step in three is required here, so cycle 0 has data to train on.
    cfg["verify"]["graph_path_steps"] = 0.34
    cfg["evaluate"] |= {"max_new_tokens": 64, "limit": 12}
    for suite in cfg["evaluate"]["suites"]:  # the reported held-out videos and the validation ones
        suite["data"]["records"] = str(tmp_path / "heldout/records.jsonl")
    cfg["decide"]["max_cycles"] = 2
    cfg["tracking"] = {"mlflow_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "step-test"}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["--config", str(config), "run", "--local", "--root", str(tmp_path / "runs")]) == 0
    (run_dir,) = (p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    run = collect(run_dir)
    assert [c["cycle"] for c in run.cycles] == [0, 1]
    for summary in run.cycles:  # yields per question type and per path length, every cycle
        assert summary["per_task"] and set(summary["per_group"]) <= {f"path_length={k}" for k in range(1, 5)}
        assert sum(g["total"] for g in summary["per_group"].values()) == summary["questions"]
        assert "eval.scenegraph.accuracy" in summary
    stages = sorted((s["stage"], s["cycle"]) for s in map(
        lambda p: layout.read_json(p.parent, layout.SCORES), run_dir.rglob(layout.SCORES)))
    assert stages == [("baseline", None), ("cycle", 0), ("cycle", 1)]
    assert {"eval.scenegraph.accuracy_steps_1", "eval.scenegraph.accuracy_steps_2"} <= set(run.baseline)
    _check_mlflow(f"sqlite:///{tmp_path / 'mlflow.db'}", run.cycles)


def _check_mlflow(uri: str, cycles: list[dict]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("step-test").experiment_id])
    (parent,) = [r for r in runs if "videostar.cycle" not in r.data.tags]
    children = sorted((r for r in runs if r is not parent), key=lambda r: r.data.tags["cycle"])
    assert [r.data.tags["cycle"] for r in children] == ["0", "1"]
    for child, summary in zip(children, cycles, strict=True):
        for group, counts in summary["per_group"].items():  # path_length=3 -> path_length_3
            key = f"total_yield.{group.replace('=', '_')}"
            assert child.data.metrics[key] == pytest.approx(counts["total_yield"])
        for task in summary["per_task"]:
            assert f"answer_yield.{task}" in child.data.metrics
        assert "eval.scenegraph.accuracy" in child.data.metrics
    assert {k for k in parent.data.metrics if k.startswith("baseline.eval.scenegraph.accuracy_steps_")} >= {
        "baseline.eval.scenegraph.accuracy_steps_1", "baseline.eval.scenegraph.accuracy_steps_2"}
