"""The RLAIF steps from the command line on the tiny model: preferences -> reward model -> PPO."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY_CONFIG

from videostar.cli import main
from videostar.config import config_from_dict
from videostar.data.records import Record, read_records, read_rows, write_jsonl
from videostar.errors import ConfigError
from videostar.model import read_card
from videostar.rlaif.steps import rlaif_prompts, split_videos


def test_split_holds_out_whole_videos():
    recs = [Record(id=f"{v}/{t}", video=f"v{v}.mp4", question="q", label={"object": "x"},
                   label_type=["class"], task=t) for v in range(10) for t in ("a", "b")]
    held = split_videos(recs, 0.25, seed=0)
    assert len(held) == 3 and held == split_videos(recs, 0.25, seed=0)
    assert split_videos(recs[:2], 0.25, seed=0) == set()  # one video: nothing to hold out
    assert len(split_videos(recs[:4], 0.9, seed=0)) == 1  # always something left to train on


def test_rlaif_prompts_are_the_configured_tasks():
    recs = [Record(id=f"{v}/{t}", video=f"v{v}.mp4", question="q", label={"object": "x"},
                   label_type=["class"], task=t) for v in range(4) for t in ("a", "b")]
    assert rlaif_prompts(recs, config_from_dict({})) == recs
    only_b = config_from_dict({"rlaif": {"tasks": ["b"], "prompts": 3}})
    assert [r.id for r in rlaif_prompts(recs, only_b)] == ["0/b", "1/b", "2/b"]
    with pytest.raises(ConfigError, match=r"rlaif.tasks: none of \['c'\] is a task .*they have: a, b"):
        rlaif_prompts(recs, config_from_dict({"rlaif": {"tasks": ["c"]}}))


@pytest.fixture()
def rlaif_config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg.pop("tracking")
    cfg["rlaif"]["ppo"] |= {"steps": 2, "batch_size": 8, "max_new_tokens": 16, "save_every": 1}
    cfg["rlaif"]["reward_model"]["epochs"] = 2
    # Every record a prompt, three pairs each: one pair kept 2-4 of the 24 prompts under the three
    # CPU kernel levels (once none of them in the training split); three keep 22-32 as fast.
    cfg["rlaif"] |= {"tasks": [], "pairs_per_prompt": 3}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.trains
def test_rlaif_steps_from_the_cli(tiny_base: Path, synthetic_data: Path, tmp_path: Path,
                                  rlaif_config: Path, capsys):
    records = read_records(synthetic_data)[:24]
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xde\xad" * 500)
    data = tmp_path / "records.jsonl"
    write_jsonl(data, [*records, Record(**{**records[0].__dict__, "id": "bad", "video": str(corrupt)})])
    with data.open("a") as fh:
        fh.write('{"id": "no-label", "video": "v.mp4"}\n')  # a malformed record
    common = ["--config", str(rlaif_config)]
    prefs, rm, ppo = tmp_path / "prefs", tmp_path / "rm", tmp_path / "ppo"

    assert main([*common, "preferences", "--model", str(tiny_base), "--records", str(data),
                 "--out", str(prefs)]) == 0
    metrics = json.loads((prefs / "metrics.json").read_text())
    assert metrics["prompts"] == 24 and [e["id"] for e in metrics["video_errors"]] == ["bad"]
    err = capsys.readouterr().err  # one line each, and the step went on
    assert f"video error: bad: {corrupt}: " in err and f"bad row: {data}:26: " in err
    pairs = read_rows(prefs / "pairs.jsonl") + read_rows(prefs / "heldout.jsonl")
    assert len(pairs) == metrics["kept"] > 0
    held = set(json.loads((prefs / "split.json").read_text())["heldout_videos"])
    assert {p["video"] for p in read_rows(prefs / "heldout.jsonl")} <= held
    assert not {p["video"] for p in read_rows(prefs / "pairs.jsonl")} & held
    for pair in pairs:  # the label judge: exactly one of the two answers held the labels
        held_labels = [o.endswith("holds the labels") for o in pair["judge_outputs"]]
        assert sorted(held_labels) == [False, True] and pair["narrative"].startswith("Clip 1: ")

    assert main([*common, "reward-model", "--model", str(tiny_base), "--preferences", str(prefs),
                 "--out", str(rm)]) == 0
    assert read_card(rm / "model")["kind"] == "reward_model"
    assert json.loads((rm / "metrics.json").read_text())["steps"] > 0

    assert main([*common, "ppo", "--model", str(tiny_base), "--reward-model", str(rm / "model"),
                 "--records", str(data), "--preferences", str(prefs), "--out", str(ppo)]) == 0
    result = json.loads((ppo / "metrics.json").read_text())
    assert len(result["input_errors"]) == 1 and f"bad row: {data}:26: " in capsys.readouterr().err
    assert result["steps"] == 2 and [h["step"] for h in result["history"]] == [1, 2]
    assert sorted(p.name for p in (ppo / "checkpoints").iterdir()) == ["stamp.json", "step-1", "step-2"]
    assert read_card(ppo / "model")["base"] == str(tiny_base)
    assert result["heldout_reward_after"] == result["heldout_reward_after"]  # measured, not NaN
    # a second run (a retried step) never trains or overwrites the saved policy: it completes from its card
    policy = {p.name: p.read_bytes() for p in (ppo / "model").iterdir()}
    assert main([*common, "ppo", "--model", str(tiny_base), "--reward-model", str(rm / "model"),
                 "--records", str(data), "--preferences", str(prefs), "--out", str(ppo)]) == 0
    assert "already holds this run's model (saved before its metrics); completing" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (ppo / "model").iterdir()} == policy
    assert json.loads((ppo / "metrics.json").read_text())["history"] == result["history"]
