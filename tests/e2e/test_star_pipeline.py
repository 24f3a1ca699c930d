"""Two Video-STaR cycles through the CLI on synthetic videos with the tiny model."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY_CONFIG

from videostar.cli import main
from videostar.data.records import read_rows


def _cycle(k: int, model: Path, base: Path, data: Path, work: Path, history: list[str]) -> Path:
    c = work / f"cycle-{k}"
    # the yields are the point here: no evaluation suites, so decide follows the yield alone
    tiny = yaml.safe_load(TINY_CONFIG.read_text())
    tiny["evaluate"]["suites"], tiny["decide"]["select"] = [], None
    (work / "run.yaml").write_text(yaml.safe_dump(tiny))
    cfg = ["--config", str(work / "run.yaml")]
    steps = [
        ["generate", "--model", str(model), "--data", str(data), "--out", str(c / "generate")],
        ["verify", "--answers", str(c / "generate/answers.jsonl"), "--out", str(c / "verify")],
        ["rationalize", "--model", str(model), "--rejected", str(c / "verify/rejected.jsonl"),
         "--out", str(c / "rationalize")],
        ["sft", "--base-model", str(base), "--data", str(c / "verify/verified.jsonl"),
         str(c / "rationalize/verified.jsonl"), "--out", str(c / "sft")],
        ["summarize", "--cycle", str(k), "--verify", str(c / "verify/metrics.json"),
         "--rationalize", str(c / "rationalize/metrics.json"), "--out", str(c / "summary.json")],
    ]
    for step in steps:
        assert main(cfg + step) == 0, step
    history.append(str(c / "summary.json"))
    assert main(cfg + ["decide", "--history", *history, "--out", str(c / "decision.json")]) == 0
    return c


@pytest.mark.trains
def test_two_cycles_raise_the_verified_yield(tiny_base: Path, synthetic_data: Path, tmp_path: Path):
    history: list[str] = []
    c0 = _cycle(0, tiny_base, tiny_base, synthetic_data, tmp_path, history)
    c1 = _cycle(1, c0 / "sft/model", tiny_base, synthetic_data, tmp_path, history)
    s0, s1 = (json.loads((c / "summary.json").read_text()) for c in (c0, c1))
    keys = ("answer_yield", "rationalization_yield", "total_yield")
    for k, s in enumerate((s0, s1)):
        print(f"cycle {k}:", json.dumps({key: round(s[key], 4) for key in keys}))

    # Measured under the three CPU kernel levels (bases built under each, and from two more base
    # seeds): cycle-0 answer yield 0.24-0.31, cycle 1 0.87-0.88; cycle-0 rationalization
    # 0.94-1.0 of about 100 rejected answers; cycle 1's of its 17-19 rejected: 0.37-1.0.
    assert 0.15 < s0["answer_yield"] < 0.8, "the tiny base should be a weak but real start"
    assert s1["answer_yield"] > s0["answer_yield"] + 0.3
    assert s0["rationalization_yield"] >= 0.8  # rationalization recovers most rejected answers
    assert s1["total_yield"] > s1["answer_yield"]  # and still recovers some after a cycle's SFT
    # every kept answer really contains its labels; rationales never carry the hint
    for row in read_rows(c0 / "verify/verified.jsonl") + read_rows(c0 / "rationalize/verified.jsonl"):
        assert row["verdict"]["passed"] and "Answer:" not in row["answer"]
    # cycle 1 was trained from the base, not from cycle 0's weights
    card = json.loads((c1 / "sft/model/videostar_model.json").read_text())
    assert card["base"] == str(tiny_base) and card["kind"] == "lora"
    decision = json.loads((c1 / "decision.json").read_text())
    assert decision["cycles"] == 2 and isinstance(decision["continue"], bool)
