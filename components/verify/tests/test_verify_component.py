import json

import pytest
from kfp import dsl
from videostar.components import verify

from videostar.data.records import Record, write_jsonl

pytestmark = pytest.mark.fast


def test_verify_interface(interface):
    assert interface(verify) == ({"config", "answers"}, {"out", "metrics"}, "cpu")


def test_verify_gathers_every_shard(tmp_path, dataset):
    shards = []
    for i, answer in enumerate(["a red circle moves", "nothing to see"]):
        rec = Record(id=f"r{i}", video="v.mp4", question="What is shown?", task="action_recognition",
                     label={"class": "red circle"}, label_type=["class"])
        write_jsonl(tmp_path / f"g{i}" / "answers.jsonl", [rec.to_json() | {"answer": answer}])
        shards.append(dataset(tmp_path / f"g{i}"))
    metrics = dsl.Metrics(name="metrics", uri=str(tmp_path / "m"))
    verify.verify(config="{}", answers=shards, out=dataset(tmp_path / "out"), metrics=metrics)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["passed"] == 1
    assert metrics.metadata["total"] == 2 and metrics.metadata["passed"] == 1  # the KFP UI's numbers
