"""docs/config-reference.md is what the config dataclasses say today."""

from pathlib import Path

import pytest

from videostar.config import reference

pytestmark = pytest.mark.fast

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "config-reference.md"


def test_committed_reference_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == reference.render(), (
        "docs/config-reference.md is stale: run make docs")


def test_every_leaf_field_is_in_the_reference() -> None:
    text = reference.render()
    keys = reference.leaf_keys()
    assert {"sft.lora.r", "pipeline.sft.launcher.kind", "templates"} <= set(keys)
    assert [k for k in keys if f"| `{k}` |" not in text] == []


def test_rules_are_read_from_validate() -> None:
    """The allowed column says what the error message says, helpers and cross-section checks included."""
    rows = {line.split(" | ")[0].strip("| `"): line for line in reference.render().splitlines()
            if line.startswith("| `")}
    assert "an integer from 1 to 1024" in rows["pipeline.num_shards"]
    assert "a number in [0, 1)" in rows["sft.warmup_ratio"]
    assert "a ReadWriteMany PVC when a launcher is trainjob" in rows["pipeline.pvc"]
    assert "got" not in rows["pipeline.images.gpu"]
