"""Fault suite on the tiny model: hostile rows in every model step's input, generate killed
mid-run and resumed over a torn line, rationalize resumed over a torn line, and an output
folder reused with another model or input."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY_CONFIG, colour_preferences
from hostile import (
    TORN,
    assert_reported,
    write_hostile,
)

from videostar.cli import main
from videostar.data.records import read_records, read_rows, write_jsonl

pytestmark = pytest.mark.faults


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    """The tiny recipe, one record per batch (so a kill lands between rows), no tracking."""
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg.pop("tracking")
    cfg["generate"] |= {"batch_size": 1, "max_new_tokens": 8}
    cfg["sft"] |= {"epochs": 1}
    cfg["rlaif"] |= {"num_clips": 1, "frames_per_clip": 2}
    cfg["rlaif"]["reward_model"] |= {"epochs": 1, "heldout_fraction": 0.5}
    cfg["rlaif"]["ppo"] |= {"steps": 1, "batch_size": 2, "minibatch_size": 2, "max_new_tokens": 4,
                            "heldout_samples": 1}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _good(synthetic_data: Path, n: int, **extra: object) -> list[dict]:
    recs = [r for r in read_records(synthetic_data) if r.task == "action_recognition"][:n]
    return [r.to_json() | extra for r in recs]


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_hostile_rows_in_every_model_step(tiny_base: Path, synthetic_data: Path, tmp_path: Path,
                                          config: Path, capsys):
    """generate, rationalize, sft, preferences, reward and ppo: each bad row is one line on
    stderr and in metrics.json, and the good rows are processed."""
    common = ["--config", str(config)]
    model = ["--model", str(tiny_base)]
    records = tmp_path / "records.jsonl"
    expected_records = write_hostile(records, _good(synthetic_data, 4))
    ids = [r["id"] for r in _good(synthetic_data, 4)]

    for step, option in (("generate", "--data"), ("rationalize", "--rejected")):
        out = tmp_path / step
        assert main([*common, step, *model, option, str(records), "--out", str(out)]) == 0
        assert_reported(records, expected_records, _metrics(out)["input_errors"], capsys.readouterr().err)
        produced = out / ("answers.jsonl" if step == "generate" else "rationales.jsonl")
        assert [r["id"] for r in read_rows(produced)] == ids

    verified = tmp_path / "verified.jsonl"
    expected = write_hostile(verified, _good(synthetic_data, 4, answer="I see a shape."))
    out = tmp_path / "sft"
    (tmp_path / "sft" / ".model.k1ll3d").mkdir(parents=True)  # a save killed last time
    assert main([*common, "sft", "--base-model", str(tiny_base), "--data", str(verified),
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"cleanup: removed the temp folder of an interrupted save: {out / '.model.k1ll3d'}" in err
    assert_reported(verified, expected, _metrics(out)["input_errors"], err)
    assert _metrics(out)["examples"] == 4 and not (out / ".model.k1ll3d").exists()

    prefs, rm, ppo = tmp_path / "prefs", tmp_path / "rm", tmp_path / "ppo"
    assert main([*common, "preferences", *model, "--records", str(records), "--out", str(prefs)]) == 0
    errors = _metrics(prefs)["input_errors"]
    assert_reported(records, expected_records, errors, capsys.readouterr().err)

    # The reward model's pairs: synthetic ones (the tiny judge keeps too few of 4 prompts), with
    # a hostile and a torn pair among them; held-out videos are others than the PPO prompts'.
    pairs = [dataclasses.asdict(p) for p in colour_preferences(synthetic_data)]
    train, heldout = pairs[4:8], pairs[8:10]
    folder = tmp_path / "pairs"
    write_jsonl(folder / "heldout.jsonl", heldout)
    (folder / "split.json").write_text(json.dumps({"heldout_videos": [p["video"] for p in heldout]}))
    bad = {**train[0], "id": "bad-pair", "video": 3}
    (folder / "pairs.jsonl").write_bytes(b"".join(json.dumps(p).encode() + b"\n" for p in [*train, bad])
                                         + b'{"id": "torn-pair", "vid')
    assert main([*common, "reward-model", *model, "--preferences", str(folder), "--out", str(rm)]) == 0
    errors = _metrics(rm)["input_errors"]
    assert [e.split(": ", 1)[0] for e in errors] == [f"{folder / 'pairs.jsonl'}:{n}" for n in (5, 6)]
    assert "video must be a string" in errors[0] and "torn last line" in errors[1]
    assert capsys.readouterr().err.count("bad row: ") == 2
    assert main([*common, "ppo", *model, "--reward-model", str(rm / "model"), "--records", str(records),
                 "--preferences", str(folder), "--out", str(ppo)]) == 0
    assert_reported(records, expected_records, _metrics(ppo)["input_errors"], capsys.readouterr().err)
    assert _metrics(ppo)["prompts"] == 4


def _killed_generate(args: list[str], partial: Path, rows: int) -> None:
    """Run generate in a child process and SIGKILL it once ``rows`` rows are on disk."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-m", "videostar.cli", *args], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and child.poll() is None:
        if partial.exists() and partial.read_bytes().count(b"\n") >= rows:
            break
        time.sleep(0.05)
    assert child.poll() is None, "generate finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()


def test_generate_killed_mid_run_resumes_over_a_torn_line(tiny_base: Path, synthetic_data: Path,
                                                          tmp_path: Path, config: Path, capsys):
    good = _good(synthetic_data, 6)
    records = tmp_path / "records.jsonl"
    write_jsonl(records, good)
    out = tmp_path / "gen"
    args = ["--config", str(config), "generate", "--model", str(tiny_base), "--data", str(records),
            "--out", str(out)]
    partial = out / "answers.jsonl.partial"
    _killed_generate(args, partial, rows=2)
    kept = partial.read_bytes()
    kept = kept[: kept.rfind(b"\n") + 1]
    partial.write_bytes(kept + TORN)  # the kill cut a row in half
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "torn last line (no newline at its end); dropped" in err
    rows = read_rows(out / "answers.jsonl")
    assert [r["id"] for r in rows] == [r["id"] for r in good]  # each once, in order
    assert (out / "answers.jsonl").read_bytes().startswith(kept)  # finished rows kept as they were
    assert _metrics(out)["skipped_existing"] == kept.count(b"\n")


def test_rationalize_resumes_over_a_torn_line(tiny_base: Path, synthetic_data: Path, tmp_path: Path,
                                              config: Path, capsys):
    rejected = tmp_path / "rejected.jsonl"
    write_jsonl(rejected, _good(synthetic_data, 4))
    out = tmp_path / "rat"
    args = ["--config", str(config), "rationalize", "--model", str(tiny_base), "--rejected",
            str(rejected), "--out", str(out)]
    assert main(args) == 0
    full = (out / "rationales.jsonl").read_bytes().splitlines(keepends=True)
    # as a kill would leave it: two rows, a torn third, no published outputs
    for name in ("rationales.jsonl", "verified.jsonl", "rejected.jsonl"):
        (out / name).unlink()
    (out / "rationales.jsonl.partial").write_bytes(b"".join(full[:2]) + full[2][:25])
    capsys.readouterr()
    assert main(args) == 0
    assert "torn last line" in capsys.readouterr().err
    again = (out / "rationales.jsonl").read_bytes().splitlines(keepends=True)
    assert again[:2] == full[:2] and [json.loads(r)["id"] for r in again] == [
        json.loads(r)["id"] for r in full]
    assert _metrics(out)["generation"]["skipped_existing"] == 2


def test_folder_of_other_work_is_refused_unless_fresh(tiny_base: Path, synthetic_data: Path,
                                                      tmp_path: Path, config: Path, capsys):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(first, _good(synthetic_data, 3))
    write_jsonl(second, _good(synthetic_data, 5)[3:])
    same_model = tmp_path / "same-model"  # the same content at another path: the same work
    same_model.symlink_to(tiny_base, target_is_directory=True)
    other_model = tmp_path / "other-model"  # other content (one setting of its config)
    shutil.copytree(tiny_base, other_model)
    config_json = other_model / "config.json"
    config_json.write_text(json.dumps(json.loads(config_json.read_text()) | {"_edited": True}))
    out = tmp_path / "gen"

    def generate(model: Path, data: Path, *more: str) -> int:
        return main(["--config", str(config), "generate", "--model", str(model), "--data", str(data),
                     "--out", str(out), *more])

    assert generate(tiny_base, first) == 0
    before = (out / "answers.jsonl").read_bytes()
    assert generate(same_model, first) == 0
    capsys.readouterr()
    for model, data, what in ((other_model, first, "different model"),
                              (tiny_base, second, "different inputs")):
        assert generate(model, data) == 1
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line == (f"error: {out}: holds the output of other work ({what}); use another folder, "
                        "or pass --fresh to discard it")
        assert (out / "answers.jsonl").read_bytes() == before  # nothing mixed in, nothing lost
    assert generate(tiny_base, second, "--fresh") == 0
    new_ids = [r["id"] for r in _good(synthetic_data, 5)[3:]]
    assert [r["id"] for r in read_rows(out / "answers.jsonl")] == new_ids
    assert "fresh: removed the earlier outputs" in capsys.readouterr().err
    assert generate(tiny_base, second) == 0  # the same work: resumes (nothing left to do)
    assert _metrics(out)["skipped_existing"] == 2
