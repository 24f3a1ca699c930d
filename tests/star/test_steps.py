"""The steps one by one on the tiny model: bad videos, resumability, hints, SFT rules, decide."""

import json
from pathlib import Path

import pytest
from conftest import TINY_CONFIG

from videostar.cli import main
from videostar.config import DecideConfig, config_from_dict, load_config
from videostar.data.records import Record, read_records, read_rows, write_jsonl
from videostar.errors import ConfigError, VideostarError
from videostar.prompts import hint_prompt, label_text
from videostar.star.decide import decide, summarize_cycle
from videostar.star.rationalize import hint_echo
from videostar.star.sft import epoch_batches, examples_from_rows, train_sft


@pytest.fixture()
def broken_dataset(tmp_path: Path, synthetic_data: Path) -> Path:
    """Six good records plus one whose video is corrupt and one whose video is missing."""
    records = read_records(synthetic_data)[:6]
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xde\xad" * 500)
    bad = [Record(**{**r.__dict__, "id": f"bad/{i}", "video": str(v)})
           for i, (r, v) in enumerate(zip(records[:2], [corrupt, tmp_path / "gone.mp4"], strict=True))]
    path = tmp_path / "records.jsonl"
    write_jsonl(path, records[:3] + bad + records[3:])
    return path


def test_generate_lists_bad_videos_and_processes_the_rest(
    tiny_base: Path, broken_dataset: Path, tmp_path: Path, capsys
):
    out = tmp_path / "gen"
    args = ["--config", str(TINY_CONFIG), "generate", "--model", str(tiny_base),
            "--data", str(broken_dataset), "--out", str(out)]
    assert main(args) == 0
    rows = read_rows(out / "answers.jsonl")
    assert len(rows) == 6 and all(r["answer"] for r in rows)
    assert not any(r["id"].startswith("bad/") for r in rows)
    metrics = json.loads((out / "metrics.json").read_text())
    reasons = {e["id"]: e["reason"] for e in metrics["video_errors"]}
    assert reasons["bad/1"] == "file not found"
    assert reasons["bad/0"].startswith("cannot decode")
    err = capsys.readouterr().err
    assert "video error: bad/0:" in err and "video error: bad/1:" in err

    # a rerun skips what exists and loses nothing
    before = (out / "answers.jsonl").read_text()
    assert main(args) == 0
    assert (out / "answers.jsonl").read_text() == before
    assert json.loads((out / "metrics.json").read_text())["skipped_existing"] == 6


def test_generate_resumes_from_partial_file(tiny_base: Path, synthetic_data: Path, tmp_path: Path):
    records = read_records(synthetic_data)[:5]
    write_jsonl(tmp_path / "r.jsonl", records)
    out = tmp_path / "gen"
    args = ["--config", str(TINY_CONFIG), "generate", "--model", str(tiny_base),
            "--data", str(tmp_path / "r.jsonl"), "--out", str(out)]
    assert main(args) == 0
    # as if the run had been killed after its first row
    (out / "answers.jsonl").unlink()
    done = records[0].to_json() | {"answer": "kept from the first run", "prompt_kind": "answer"}
    (out / "answers.jsonl.partial").write_text(json.dumps(done) + "\n")
    assert main(args) == 0
    rows = read_rows(out / "answers.jsonl")
    assert [r["id"] for r in rows] == [r.id for r in records]
    assert rows[0]["answer"] == "kept from the first run"
    assert not (out / "answers.jsonl.partial").exists()


def test_hint_is_in_the_prompt_but_never_in_training_text(synthetic_data: Path):
    cfg = load_config(TINY_CONFIG)
    rec = next(r for r in read_records(synthetic_data) if r.task == "action_recognition")
    hinted = hint_prompt(cfg.rationalize.hint)(rec)
    assert f"Answer: {rec.label['object']}." in hinted
    hint = cfg.rationalize.hint.format(label=label_text(rec))
    answer = f"I see a {rec.label['object']}."
    assert hint_echo(answer, cfg.rationalize.hint, label_text(rec)) is None
    row = rec.to_json() | {"answer": answer, "hint": hint, "prompt_kind": "rationalization"}
    (example,) = examples_from_rows([row], cfg.generate.instruction)
    assert example.question == f"{rec.question} {cfg.generate.instruction}"
    assert "Answer:" not in example.question and "Answer:" not in example.answer


def test_label_text_states_each_label_type():
    rec = Record(id="x", video="v", question="q", task="t",
                 label={"sub_actions": ["pike", "twist"], "score": 84.5, "segment": [0.25, 0.5]},
                 label_type=["sequence", "float", "temporal_range"])
    assert label_text(rec) == "sub actions: pike, then twist; score 84.5; from 0.25 to 0.50"


def test_curriculum_puts_short_answers_first(synthetic_data: Path):
    records = read_records(synthetic_data)[:3]
    rows = [r.to_json() | {"answer": "x" * n} for n, r in zip((30, 5, 17), records, strict=True)]
    cfg = load_config(TINY_CONFIG).sft
    cfg.curriculum = True
    examples = examples_from_rows(rows, "Explain.")
    assert [len(e.answer) for batch in epoch_batches(examples, cfg, 1) for e in batch] == [5, 17, 30]


@pytest.mark.trains
def test_sft_refuses_a_fine_tuned_start(tiny_base: Path, synthetic_data: Path, tmp_path: Path):
    cfg = load_config(TINY_CONFIG)
    rows = [r.to_json() | {"answer": r.meta["reference"]} for r in read_records(synthetic_data)[:8]]
    write_jsonl(tmp_path / "verified.jsonl", rows)
    metrics = train_sft(str(tiny_base), [tmp_path / "verified.jsonl"], tmp_path / "m1", cfg.sft, cfg.video,
                  cfg.generate.instruction, progress=False)
    assert metrics["kind"] == "lora" and metrics["examples"] == 8
    assert metrics["train_loss"] < metrics["first_loss"]
    with pytest.raises(VideostarError, match="starts from the base checkpoint"):
        train_sft(str(tmp_path / "m1"), [tmp_path / "verified.jsonl"], tmp_path / "m2", cfg.sft, cfg.video,
            cfg.generate.instruction, progress=False)
    # the same work again completes from the saved model's card; other work never overwrites it
    again = train_sft(str(tiny_base), [tmp_path / "verified.jsonl"], tmp_path / "m1", cfg.sft, cfg.video,
                cfg.generate.instruction, progress=False)
    assert again == metrics
    with pytest.raises(VideostarError, match="another run's model .* refusing to overwrite"):
        train_sft(str(tiny_base), [tmp_path / "verified.jsonl"], tmp_path / "m1", cfg.sft, cfg.video,
            "Another instruction.", progress=False)


def test_summarize_cycle_yields():
    verify = {"total": 10, "passed": 4, "per_label_type": {"class": {"total": 10, "passed": 4}}}
    shards = [{"passed": 2, "per_label_type": {"class": {"passed": 2}}},
              {"passed": 1, "per_label_type": {"class": {"passed": 1}}}]
    s = summarize_cycle(2, verify, shards)
    assert (s["answer_yield"], s["rationalization_yield"], s["total_yield"]) == (0.4, 0.5, 0.7)
    assert s["per_label_type"]["class"] == {"total": 10, "answer_yield": 0.4, "total_yield": 0.7}


@pytest.mark.parametrize(
    ("yields", "go", "why"),
    [
        ([], True, "no cycle"),
        ([0.5], True, "still improving"),
        ([0.5, 0.7], True, "still improving"),
        ([0.5, 0.505], False, "plateaued"),
        ([0.7, 0.6], False, "plateaued"),
        ([0.1, 0.3, 0.6], False, "budget of 3"),
    ],
)
def test_decide(yields, go, why):
    decision = decide([{"total_yield": y} for y in yields], DecideConfig(max_cycles=3, min_delta=0.01))
    assert decision["continue"] is go and why in decision["reason"]


@pytest.mark.parametrize(
    ("accuracies", "patience", "go", "chosen", "why"),
    [
        ([0.4], 1, True, 0, "still improving"),
        ([0.4, 0.6], 1, True, 1, "still improving"),
        ([0.4, 0.4], 1, False, 0, "has not improved for 1 cycle"),  # a tie hands on the earlier
        ([0.6, 0.4], 2, True, 0, "still improving"),
        ([0.6, 0.4, 0.5], 2, False, 0, "has not improved for 2 cycle"),
        ([0.2, 0.6, 0.4, 0.7, 0.1], 3, False, 3, "budget of 5"),
    ],
)
def test_decide_selects_the_best_cycle_on_validation(accuracies, patience, go, chosen, why):
    """Yield keeps rising on the training questions; the cycle handed on is the best on
    validation, and the cycles stop once validation has no new best for ``patience`` cycles."""
    cfg = DecideConfig(max_cycles=5, metric="answer_yield", select="val.kinetics700.accuracy",
                       patience=patience)
    history = [{"answer_yield": 0.1 * (k + 1), "val.kinetics700.accuracy": a}
               for k, a in enumerate(accuracies)]
    decision = decide(history, cfg)
    assert (decision["continue"], decision["chosen"]) == (go, chosen) and why in decision["reason"]
    assert decision["val.kinetics700.accuracy"] == accuracies[chosen]


def test_select_is_a_validation_number_of_a_validation_suite():
    """Reported held-out numbers never choose; a validation suite must be configured."""
    suite = {"name": "kinetics700", "data": {"csv": "a.csv", "videos": "v"}}
    with pytest.raises(ConfigError, match=r"decide.select: .*a validation number \(val\.<suite>\.<metric>\)"):
        config_from_dict({"decide": {"select": "eval.kinetics700.accuracy"},
                          "evaluate": {"suites": [suite]}})
    with pytest.raises(ConfigError, match="decide.select: .*needs the kinetics700 suite with role valid"):
        config_from_dict({"decide": {"select": "val.kinetics700.accuracy"}, "evaluate": {"suites": [suite]}})
    with pytest.raises(ConfigError, match=r"suites\[1\]\.name: .*suites\[0\] is already kinetics700"):
        config_from_dict({"evaluate": {"suites": [suite, suite]}})
    both = [suite, suite | {"role": "validation"}]
    cfg = config_from_dict({"decide": {"select": "val.kinetics700.accuracy"}, "evaluate": {"suites": both}})
    assert [s.prefix for s in cfg.evaluate.suites] == ["eval", "val"]


def test_decide_on_another_metric_requires_it():
    cfg = DecideConfig(metric="answer_yield")
    assert decide([{"answer_yield": 0.2}], cfg)["continue"]
    with pytest.raises(KeyError, match="answer_yield"):
        decide([{"total_yield": 0.2}], cfg)
