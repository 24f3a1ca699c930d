"""summarize and decide from the command line: a suite's numbers join the summary, and a
validation number decide.select needs but no summary has is one line, exit 2."""

import json
from pathlib import Path

import pytest
import yaml

from videostar.cli import main

pytestmark = pytest.mark.fast

SUITES = [{"name": "kinetics700", "data": {"csv": "h.csv", "videos": "h"}},
          {"name": "kinetics700", "role": "validation", "data": {"csv": "v.csv", "videos": "v"}}]


def _summary(tmp_path: Path, k: int, validation: float | None) -> Path:
    c = tmp_path / f"cycle-{k}"
    c.mkdir()
    (c / "verify.json").write_text(json.dumps({"total": 10, "passed": 3 + 4 * k}))
    args = ["summarize", "--cycle", str(k), "--verify", str(c / "verify.json"),
            "--out", str(c / "summary.json")]
    if validation is not None:
        (c / "scores.json").write_text(json.dumps({"stage": "cycle", "cycle": k, "scores": {
            "eval.kinetics700.accuracy": 0.9, "val.kinetics700.accuracy": validation}}))
        args += ["--scores", str(c / "scores.json")]
    assert main(args) == 0
    return c / "summary.json"


def test_decide_hands_on_the_best_cycle_on_validation(tmp_path: Path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"evaluate": {"suites": SUITES}, "decide": {
        "metric": "answer_yield", "select": "val.kinetics700.accuracy", "patience": 1}}))
    history = [str(_summary(tmp_path, k, v)) for k, v in enumerate((0.5, 0.25))]
    capsys.readouterr()
    assert main(["--config", str(config), "decide", "--history", *history]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert (decision["continue"], decision["chosen"], decision["answer_yield"]) == (False, 0, 0.7)

    bare = [str(_summary(tmp_path, 2, None))]
    capsys.readouterr()
    assert main(["--config", str(config), "decide", "--history", *bare]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["videostar decide: cycle 0 has no metric 'val.kinetics700.accuracy' (a suite's numbers "
                   "join a summary through summarize --scores <evaluate's scores.json>)"]
