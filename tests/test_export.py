"""`videostar export`: a tracked local run's cycles read back in each consumer's format, and the
MLflow UI opened in headless Chromium on the link the run printed."""

import contextlib
import io
import json
import posixpath
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import S3_ENV, TINY_CONFIG

from videostar.cli import main
from videostar.data.records import read_rows
from videostar.export import CycleData, export, locate_cycle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tracked_run(tiny_base: Path, synthetic_data: Path, mlflow_server: str, moto_endpoint: str,
                tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two cycles of the tiny pipeline (one shard, short SFT, no evaluation or RLAIF) tracked in a
    real MLflow server with the store on moto; what the run printed, its folder and config."""
    tmp = tmp_path_factory.mktemp("export-run")
    tiny = yaml.safe_load(TINY_CONFIG.read_text())
    tiny["pipeline"] |= {"base_model": str(tiny_base), "dataset": str(synthetic_data), "num_shards": 1}
    tiny["decide"] |= {"max_cycles": 2}  # a budget of 2: the plateau test needs two cycles, so both run
    tiny["sft"]["epochs"] = 2
    tiny["evaluate"]["suites"] = []
    tiny["decide"]["select"] = None  # no validation suite: the last cycle is handed on
    tiny["rlaif"]["enabled"] = False
    tiny["tracking"] = {"mlflow_uri": mlflow_server, "experiment": "export-test",
                        "registered_model": "export-test-sft", "store": "s3://videostar-export"}
    config = tmp / "run.yaml"
    config.write_text(yaml.safe_dump(tiny))
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        for key, value in {**S3_ENV, "VIDEOSTAR_S3_ENDPOINT": moto_endpoint}.items():
            mp.setenv(key, value)
        assert main(["--config", str(config), "run", "--local", "--root", str(tmp / "runs")]) == 0
    (run_dir,) = (p for p in (tmp / "runs").iterdir() if p.is_dir())
    return {"config": config, "run_dir": run_dir, "printed": out.getvalue(), "uri": mlflow_server,
            "s3": moto_endpoint}


def _expected(run_dir: Path, cycle: int | None = None) -> tuple[int, list[dict]]:
    """The cycle's verified rows as its summary counts them, and as its files hold them."""
    files = locate_cycle(run_dir, cycle)
    summary = json.loads(files.summary.read_text())
    rows = [r for f in files.training for r in read_rows(f)]
    assert summary["answered"] + summary["rationalized"] == len(rows) > 0
    return files.cycle, rows


def _export(run: str, fmt: str, out: Path, *extra: str) -> None:
    assert main(["export", "--run", run, "--cycle", "last", "--format", fmt, "--out", str(out), *extra]) == 0


def test_hf_export_reads_back_with_load_from_disk(tracked_run: dict, tmp_path: Path, capsys):
    from datasets import load_from_disk

    run_dir = tracked_run["run_dir"]
    cycle, rows = _expected(run_dir)
    assert cycle == 1
    _export(str(run_dir), "hf", tmp_path / "hf")
    printed = capsys.readouterr().out
    assert f"{len(rows)} verified rows of {run_dir} cycle 1" in printed
    ds = load_from_disk(str(tmp_path / "hf"))
    assert len(ds) == len(rows)
    assert sorted(ds["id"]) == sorted(r["id"] for r in rows)
    assert set(ds["cycle"]) == {1} and "Answer:" not in " ".join(ds["question"])
    steps = Counter(ds["step"])
    summary = json.loads(locate_cycle(run_dir).summary.read_text())
    assert steps == {"answer": summary["answered"], "rationalization": summary["rationalized"]}
    root = re.search(r"videos relative to (\S+)\)", printed).group(1)
    assert all((Path(root) / v).exists() for v in ds["video"]) and not ds["video"][0].startswith("/")
    first = ds[0]
    assert json.loads(first["labels"]) and first["label_types"] and first["verdict"]
    assert first["num_frames"] == 8
    card = (tmp_path / "hf" / "README.md").read_text()
    assert card.startswith("---\nlicense: unknown")
    for task, n in Counter(ds["task"]).items():
        assert f"| {task} | {n} |" in card
    for kind in {k for r in rows for k in r["label_type"]}:
        assert f"| {kind} | {sum(kind in r['label_type'] for r in rows)} |" in card
    assert f"total_yield {summary['total_yield']:.3f}" in card and "base model: " in card


def test_sharegpt_export_is_llama_factory_video_layout(tracked_run: dict, tmp_path: Path):
    """The fields LLaMA-Factory's data/README.md documents for a multimodal video dataset, read
    with the `datasets` JSON loader its data loader uses."""
    from datasets import load_dataset

    run_dir = tracked_run["run_dir"]
    _, rows = _expected(run_dir)
    _export(str(run_dir), "sharegpt", tmp_path / "lf", "--video-root", "/data/videos")
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert info == {"videostar_cycle1": {
        "file_name": "videostar_cycle1.json", "formatting": "sharegpt",
        "columns": {"messages": "messages", "videos": "videos"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant"}}}
    ds = load_dataset("json", data_files=str(tmp_path / "lf" / "videostar_cycle1.json"), split="train")
    assert len(ds) == len(rows)
    by_id = {r["id"]: r for r in rows}
    for item in ds:
        user, assistant = item["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert user["content"].count("<video>") == len(item["videos"]) == 1
        assert user["content"] == "<video>" + by_id[item["id"]]["question"]
        assert assistant["content"] == by_id[item["id"]]["answer"]
        assert item["videos"][0].startswith("/data/videos/") and item["videos"][0].endswith(".mp4")


def test_llava_export_has_video_conversations(tracked_run: dict, tmp_path: Path):
    run_dir = tracked_run["run_dir"]
    _, rows = _expected(run_dir, 0)
    assert main(["export", "--run", str(run_dir), "--cycle", "0", "--format", "llava",
                 "--out", str(tmp_path / "llava"), "--video-root", "s3://bucket/videos"]) == 0
    data = json.loads((tmp_path / "llava" / "videostar_cycle0.json").read_text())
    assert len(data) == len(rows)
    videos = {r["id"]: r["video"] for r in rows}
    for item in data:
        human, gpt = item["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<video>\n")
        assert gpt["from"] == "gpt" and gpt["value"]
        assert item["cycle"] == 0 and item["step"] in ("answer", "rationalization")
        assert item["video"] == posixpath.join("s3://bucket/videos", Path(videos[item["id"]]).name)


def test_export_from_the_mlflow_run(tracked_run: dict, tmp_path: Path, monkeypatch):
    """The same cycle read through MLflow: the cycle run's dataset input, from the store."""
    from datasets import load_from_disk
    from mlflow import MlflowClient

    for key, value in {**S3_ENV, "VIDEOSTAR_S3_ENDPOINT": tracked_run["s3"],
                       "VIDEOSTAR_CACHE": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(tracked_run["uri"])
    exp = client.get_experiment_by_name("export-test")
    (parent,) = [r for r in client.search_runs([exp.experiment_id]) if "videostar.cycle" not in r.data.tags]
    _, rows = _expected(tracked_run["run_dir"])
    _export(parent.info.run_id, "hf", tmp_path / "hf", "--mlflow-uri", tracked_run["uri"])
    ds = load_from_disk(str(tmp_path / "hf"))
    assert sorted(ds["id"]) == sorted(r["id"] for r in rows)
    assert set(ds["cycle"]) == {1}
    assert ds[0]["num_frames"] == 8  # from the run's params


def _training_file(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rationale_steps_pass_through_every_format(synthetic_data: Path, tmp_path: Path):
    """STEP's rows carry their graph-path rationale steps, of any JSON shape; the JSON formats keep
    them as they are, hf as JSON text (one Arrow type per column would coerce them)."""
    from datasets import load_from_disk

    rows = []
    for i, row in enumerate(read_rows(synthetic_data)[:6]):
        steps = [f"{row['meta']['reference']} appears", "so the answer follows"]
        shaped = steps if i % 3 == 0 else [{"subject": steps[0], "object": None}] if i % 3 == 1 else {"x": 1}
        rows.append(row | {"answer": " ".join(steps), "prompt_kind": "answer", "rationale_steps": shaped,
                           "verdict": {"passed": True, "labels": {}}})
    data = CycleData(0, [_training_file(tmp_path / "train.jsonl", rows)], {"answer_yield": 1.0}, "tiny",
                     "step-run cycle 0", 8)
    export(data, "hf", tmp_path / "hf")
    ds = load_from_disk(str(tmp_path / "hf"))
    assert [json.loads(s) for s in ds["rationale_steps"]] == [r["rationale_steps"] for r in rows]
    assert ds.features["rationale_steps"].dtype == "string"
    for fmt in ("llava", "sharegpt"):
        path = export(data, fmt, tmp_path / fmt).path
        assert [item["rationale_steps"] for item in json.loads(path.read_text())] == [
            r["rationale_steps"] for r in rows]


def test_bad_rows_are_reported_and_left_out(synthetic_data: Path, tmp_path: Path, capsys):
    good = read_rows(synthetic_data)[:3]
    rows = [r | {"answer": "a red circle", "verdict": {"passed": True, "labels": {}}} for r in good]
    rows += [{"id": "broken", "answer": "x", "verdict": {"passed": True}}, good[0] | {"id": "unverified"}]
    path = _training_file(tmp_path / "train.jsonl", rows)
    result = export(CycleData(0, [path], {}, "", "handmade", None), "llava", tmp_path / "llava")
    assert result.rows == 3 and len(result.errors) == 2
    assert result.errors[0].startswith(f"{path}:4: record broken: missing field")
    assert result.errors[1] == f"{path}:5: record unverified: answer must be a non-empty string"
    assert capsys.readouterr().err.count("bad row: ") == 2


def test_unknown_cycles_and_runs_are_one_line(tracked_run: dict, tmp_path: Path, capsys, monkeypatch):
    run_dir = str(tracked_run["run_dir"])
    assert main(["export", "--run", run_dir, "--cycle", "7", "--format", "hf", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {run_dir}: no cycle 7 (finished cycles: [0, 1])"
    assert main(["export", "--run", run_dir, "--cycle", "x", "--format", "hf", "--out", str(tmp_path)]) == 1
    assert "neither a cycle number nor 'last'" in capsys.readouterr().err
    assert main(["export", "--run", "no-such-run", "--format", "hf", "--out", str(tmp_path),
                 "--mlflow-uri", tracked_run["uri"]]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: MLflow at {tracked_run['uri']}: RESOURCE_DOES_NOT_EXIST: Run with id=no-such-run "
                   "not found"]
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the other tests' clients may set it
    assert main(["export", "--run", "no-such-run", "--format", "hf", "--out", str(tmp_path)]) == 2


@pytest.mark.slow  # a headless Chromium: the CI tier
def test_mlflow_ui_opens_on_the_cycles_and_their_examples(tracked_run: dict, tmp_path: Path):
    """The experiment is a model-training one, the run printed a link to its cycles, and headless
    Chromium finds both cycle runs there, each cycle's table of accepted and rejected answers, and
    both cycles' LoggedModels with their metrics in the experiment's Models tab."""
    from mlflow import MlflowClient

    client = MlflowClient(tracked_run["uri"])
    exp = client.get_experiment_by_name("export-test")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    url = re.search(r"the cycles in the UI: (\S+)", tracked_run["printed"]).group(1)
    assert url.startswith(f"{tracked_run['uri']}/#/experiments/{exp.experiment_id}/runs?workflowType="
                          "machine_learning&searchFilter=")
    cycles = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    table = json.loads(Path(client.download_artifacts(cycles["cycle-0"].info.run_id, "examples.json",
                                                      str(tmp_path))).read_text())
    assert table["columns"][:3] == ["outcome", "step", "reasons"]
    outcomes = {(row[0], row[1]) for row in table["data"]}
    assert {("accepted", "answer"), ("rejected", "answer")} <= outcomes
    assert all(row[2] for row in table["data"]) and {row[-1] for row in table["data"]} == {0}
    shots = tmp_path / "shots"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_mlflow_ui.py"), "--url", url,
                           "--cycles", "2", "--screenshots", str(shots)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (shots / "runs.png").stat().st_size > 10_000 and (shots / "examples.png").exists()
    assert (shots / "models.png").stat().st_size > 10_000  # the Models tab with both cycle models
