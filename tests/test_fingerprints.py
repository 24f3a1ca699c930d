"""Fault suite: a fingerprint covers every setting a step reads and the content of its model.

Which settings a step reads is derived, not listed: the step runs on a config whose sections
record every field read (:func:`_recording`). Each field read must change the step's
fingerprint when changed (or be one of the few named in ``NO_EFFECT``, with why), so a rerun
with any other setting is refused instead of reusing stale work.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from videostar import layout
from videostar.config import RunConfig
from videostar.data.records import read_rows, write_json, write_jsonl
from videostar.errors import VideostarError
from videostar.resume import STAMP, claim, file_hash, model_content
from videostar.rlaif import steps as rlaif_steps
from videostar.star import steps
from videostar.star.sft import sft_stamp

pytestmark = pytest.mark.faults

NO_EFFECT = {
    "generate.batch_size": "rows are sampled each with its own seed: the batch only changes how fast",
    "rlaif.ppo.steps": "more steps continue the same run from its checkpoints",
    "rlaif.ppo.save_every": "how often a checkpoint is written",
    "rlaif.ppo.keep_checkpoints": "how many checkpoints are kept",
    "sft.checkpoint_steps": "how often a checkpoint is written",
}
WHERE_NOT_WHAT = ("pipeline.", "tracking.")
"""Where a step runs and where it logs, never what it computes."""


def _recording(cfg: RunConfig) -> tuple[RunConfig, set[str]]:
    """A copy of ``cfg`` whose every section records the dotted names of the settings read."""
    reads: set[str] = set()
    cfg = copy.deepcopy(cfg)

    def wrap(obj: Any, prefix: str) -> None:
        names = {f.name for f in dataclasses.fields(obj)}
        for name in names:
            value = getattr(obj, name)
            if dataclasses.is_dataclass(value):
                wrap(value, f"{prefix}{name}.")

        def getter(self: Any, name: str) -> Any:
            value = object.__getattribute__(self, name)
            if name in names and not dataclasses.is_dataclass(value):
                reads.add(prefix + name)
            return value

        cls = type(obj)
        object.__setattr__(obj, "__class__", type(cls.__name__, (cls,), {"__getattribute__": getter}))

    wrap(cfg, "")
    return cfg, reads


def _changed(cfg: RunConfig, path: str) -> RunConfig:
    """``cfg`` with the setting at ``path`` set to another value of its type."""
    cfg = copy.deepcopy(cfg)
    *sections, name = path.split(".")
    obj = cfg
    for s in sections:
        obj = getattr(obj, s)
    value = getattr(obj, name)
    if path == "rlaif.tasks":
        other: Any = ["action_recognition"]  # a task these records have
    elif isinstance(value, bool):
        other = not value
    elif isinstance(value, int | float):
        other = value + 1 if isinstance(value, int) else value + 0.0625 if value < 0.5 else value / 2
    elif isinstance(value, str):
        other = value + " (changed)"
    elif value is None:
        other = 7
    elif isinstance(value, list | tuple):
        other = [*value, value[0] if value else "x"]
    else:
        other = {**value, "x": ["y"]}
    setattr(obj, name, other)
    return cfg


def _assert_covered(reads: set[str], stamp_of: Callable[[RunConfig], dict[str, Any]], cfg: RunConfig,
                    must_read: set[str]) -> None:
    """Each setting read changes the fingerprint when changed (the reads include ``must_read``:
    the derivation itself is checked)."""
    assert must_read <= reads, must_read - reads
    base = stamp_of(cfg)
    kept = [p for p in sorted(reads) if p not in NO_EFFECT and not p.startswith(WHERE_NOT_WHAT)
            and stamp_of(_changed(cfg, p)) == base]
    assert kept == [], f"settings read but not in the fingerprint: {kept}"


def _fingerprint_after(run: Callable[[Path], Any], out: Path) -> dict[str, Any]:
    """The stamp a step writes into ``out`` or its checkpoints folder (the step then fails on its
    missing model)."""
    shutil.rmtree(out, ignore_errors=True)
    with pytest.raises(VideostarError):
        run(out)
    (stamp,) = out.rglob(STAMP)
    return json.loads(stamp.read_text())


@pytest.fixture(scope="module")
def few(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [r for r in read_rows(synthetic_data) if r["task"] == "action_recognition"][:2]
    path = tmp_path_factory.mktemp("few") / "records.jsonl"
    write_jsonl(path, rows)
    return path


def test_generate_and_rationalize_fingerprints_cover_every_setting_they_read(
        tmp_path: Path, tiny_base: Path, few: Path):
    cfg = RunConfig()
    cfg.generate.max_new_tokens = 4
    recorded, reads = _recording(cfg)
    steps.generate(str(tiny_base), few, tmp_path / "gen", recorded, progress=False)
    missing = str(tmp_path / "no-model")

    def gen_stamp(c: RunConfig) -> dict[str, Any]:
        return _fingerprint_after(lambda out: steps.generate(missing, few, out, c, progress=False),
                                  tmp_path / "g")

    _assert_covered(reads, gen_stamp, cfg, {"generate.temperature", "generate.instruction",
                                            "generate.seed", "video.num_frames"})

    rejected = tmp_path / "ver" / layout.REJECTED
    steps.verify([tmp_path / "gen" / layout.ANSWERS], tmp_path / "ver", cfg)
    if not read_rows(rejected):
        write_jsonl(rejected, read_rows(few))
    recorded, reads = _recording(cfg)
    steps.rationalize(str(tiny_base), rejected, tmp_path / "rat", recorded, progress=False)

    def rat_stamp(c: RunConfig) -> dict[str, Any]:
        return _fingerprint_after(lambda out: steps.rationalize(missing, rejected, out, c, progress=False),
                                  tmp_path / "r")

    _assert_covered(reads, rat_stamp, cfg, {"rationalize.hint", "verify.class_ratio", "generate.seed"})


@pytest.mark.fast
def test_verify_and_sft_fingerprints_cover_every_setting_they_read(tmp_path: Path):
    answers = tmp_path / "answers.jsonl"
    write_jsonl(answers, [{"id": "a", "video": "v.mp4", "question": "What?", "label": {"object": "red box"},
                           "label_type": ["class"], "task": "t", "answer": "a red box"}])
    cfg = RunConfig()
    recorded, reads = _recording(cfg)
    steps.verify([answers], tmp_path / "v", recorded)

    def verify_stamp(c: RunConfig) -> dict[str, Any]:
        shutil.rmtree(tmp_path / "v2", ignore_errors=True)
        steps.verify([answers], tmp_path / "v2", c)
        return json.loads((tmp_path / "v2" / STAMP).read_text())

    _assert_covered(reads, verify_stamp, cfg, {"verify.class_ratio"})

    recorded, reads = _recording(cfg)
    with pytest.raises(VideostarError):  # no such base: everything up to loading it ran
        steps.run_sft_step(str(tmp_path / "no-model"), [answers], tmp_path / "m", tmp_path / "m.json",
                           recorded, progress=False)
    _assert_covered(reads, lambda c: sft_stamp("base", [answers], c.sft, c.video, c.generate.instruction),
                    cfg, {"sft.lr", "sft.lora.r", "generate.instruction"})


@pytest.mark.slow  # builds a reward model for PPO's stamp: the CI tier
def test_ppo_fingerprint_covers_prompts_tasks_and_instruction(tmp_path: Path, synthetic_data: Path):
    """The settings PPO reads up to loading its models, the ones its trainer is given whole
    (``rlaif.ppo``, through the fingerprint's own reading of it) among them."""
    prefs = tmp_path / "prefs"
    write_json(prefs / layout.SPLIT, {"heldout_videos": []})
    cfg = RunConfig()
    recorded, reads = _recording(cfg)
    missing = str(tmp_path / "no-model")

    def run(c: RunConfig, out: Path) -> None:
        rlaif_steps.ppo(missing, tmp_path / "no-reward", synthetic_data, prefs, out / "model",
                        out / "metrics.json", c, progress=False)

    with pytest.raises(VideostarError):
        run(recorded, tmp_path / "p")
    _assert_covered(reads, lambda c: _fingerprint_after(lambda out: run(c, out), tmp_path / "q"), cfg,
                    {"rlaif.prompts", "rlaif.tasks", "generate.instruction", "rlaif.ppo.kl_coef"})


@pytest.mark.fast
def test_a_model_replaced_at_the_same_path_is_other_work(tmp_path: Path):
    """Replaced with other bytes, even of the same size with its mtime put back (``cp -p``),
    the model's content hash changes and its outputs are refused, never reused."""
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"a" * (2 << 20))  # large enough for its hash to be cached
    (model / "config.json").write_text("{}")
    out = tmp_path / "out"
    before = model_content(str(model))
    claim(out, {"model": before}, (layout.ANSWERS,))
    (out / layout.ANSWERS).write_text('{"id": "x"}\n')
    assert model_content(str(model)) == before  # unchanged: the same work resumes
    claim(out, {"model": before}, (layout.ANSWERS,))

    stat = weights.stat()
    weights.write_bytes(b"b" * (2 << 20))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = model_content(str(model))
    assert after != before
    with pytest.raises(VideostarError, match=r"holds the output of other work \(different model\)"):
        claim(out, {"model": after}, (layout.ANSWERS,))
    assert file_hash(weights) == file_hash(weights)


@pytest.mark.fast
def test_an_adapter_fingerprint_holds_its_base_content(tmp_path: Path):
    base, adapter = tmp_path / "base", tmp_path / "adapter"
    for folder in (base, adapter):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    (adapter / layout.MODEL_CARD).write_text(json.dumps({"kind": "lora", "base": str(base)}))
    before = model_content(str(adapter))
    (base / "model.safetensors").write_bytes(b"new weights")
    assert model_content(str(adapter))["base"] != before["base"]
    assert model_content(str(adapter))["content"] == before["content"]
