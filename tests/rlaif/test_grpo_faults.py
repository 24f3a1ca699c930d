"""Fault suite of the grpo step: bad settings and missing outputs are one line and exit 2; a
step killed after saving its policy completes from it; another run's checkpoints and policy
are refused, never overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY_CONFIG

from videostar.cli import main
from videostar.data.records import read_rows, write_jsonl
from videostar.errors import VideostarError

pytestmark = pytest.mark.faults


def _config(tmp_path: Path, **grpo) -> Path:
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw.pop("tracking")
    raw["rlaif"] |= {"algorithm": "grpo", "prompts": 12}
    raw["rlaif"]["grpo"] = {"steps": 1, "batch_size": 2, "group_size": 2, "max_new_tokens": 8,
                            "minibatch_size": 4, "heldout_samples": 1, **grpo}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.fast
@pytest.mark.parametrize(("grpo", "field"), [({"group_size": 1}, "rlaif.grpo.group_size"),
                                             ({"eps": 0}, "rlaif.grpo.eps")])
def test_bad_grpo_settings_exit_2_in_one_line(tmp_path: Path, capsys, grpo: dict, field: str) -> None:
    args = ["--config", str(_config(tmp_path, **grpo)), "grpo", "--model", "m", "--reward-model", "r",
            "--records", "x.jsonl", "--preferences", "p", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"run.yaml: {field}: invalid value" in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.fast
def test_grpo_without_outputs_exits_2(tmp_path: Path, capsys) -> None:
    args = ["--config", str(_config(tmp_path)), "grpo", "--model", "m", "--reward-model", "r",
            "--records", "x.jsonl", "--preferences", "p"]
    assert main(args) == 2
    assert "grpo: --out, or both --model-out and --metrics-out, are needed" in capsys.readouterr().err


def test_killed_after_saving_its_policy_completes_and_other_work_is_refused(
    tiny_base: Path, synthetic_data: Path, tmp_path: Path, capsys
) -> None:
    records = tmp_path / "records.jsonl"
    rows = [r for r in read_rows(synthetic_data) if r["task"] == "action_recognition"][:12]
    write_jsonl(records, rows)
    prefs = tmp_path / "prefs"
    prefs.mkdir()
    (prefs / "split.json").write_text(json.dumps({"heldout_videos": [rows[-1]["video"]]}))
    out = tmp_path / "grpo"
    args = ["grpo", "--model", str(tiny_base), "--reward-model", str(tmp_path / "no-reward-model"),
            "--records", str(records), "--preferences", str(prefs), "--out", str(out)]
    config = str(_config(tmp_path))
    assert main(["--config", config, *args]) == 0  # weight 0: the reward model is never read
    first = json.loads((out / "metrics.json").read_text())
    assert first["steps"] == 1 and first["heldout_prompts"] == 1 and first["resumed_from"] is None

    (out / "metrics.json").unlink()  # killed between the policy's save and its metrics
    capsys.readouterr()
    assert main(["--config", config, *args]) == 0
    assert "already holds this run's model (saved before its metrics); completing" in capsys.readouterr().err
    again = json.loads((out / "metrics.json").read_text())
    assert again["history"] == first["history"] and again["seconds"] == first["seconds"]  # not retrained

    # other settings: the checkpoints beside metrics.json are another run's, refused in one line
    other = str(_config(tmp_path, lr=1e-3))
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert main(["--config", other, *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoints: holds the output of other work (different grpo)" in err[0], err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before
    # --fresh discards the checkpoints, never another run's saved policy
    from videostar.config import load_config
    from videostar.rlaif.steps import grpo

    with pytest.raises(VideostarError, match="holds another run's model"):
        grpo(str(tiny_base), tmp_path / "no-reward-model", records, prefs, out / "model",
             out / "metrics.json", load_config(other), fresh=True)
    card = json.loads((out / "model" / "videostar_model.json").read_text())
    assert card["result"]["history"] == first["history"]  # the saved policy is untouched
