"""Fault suite: no code from a checkpoint, verifiers linear in the answer, group-readable
outputs, and the debris of killed saves cleaned by the next run."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
import torch

from videostar.config import VerifyConfig
from videostar.data.records import JsonlAppender, write_json, write_jsonl
from videostar.errors import VideostarError
from videostar.outputs import clean_debris, clean_save_debris, publish_mode
from videostar.training import state as ckpt
from videostar.training.checkpoints import Checkpoints
from videostar.verify import get_verifier

pytestmark = [pytest.mark.fast, pytest.mark.faults]


class _Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 99, "rng": _Payload(marker)}, path)


def test_planted_pickle_checkpoint_is_refused_without_running(tmp_path: Path):
    marker = tmp_path / "pwned"
    checkpoints = tmp_path / "out" / "checkpoints"
    _plant(checkpoints / "step-99" / "ppo_state.pt", marker)
    with pytest.raises(VideostarError, match=r"step-99: holds a pickle \(ppo_state.pt\), which is never"):
        Checkpoints(checkpoints, {}, 1).latest()
    assert not marker.exists()
    # The pickle's own proof that it would have run, had it been unpickled:
    torch.load(checkpoints / "step-99" / "ppo_state.pt", weights_only=False)
    assert marker.exists()


def test_pickle_disguised_as_safetensors_is_refused_without_running(tmp_path: Path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "step-3"
    _plant(folder / ckpt.TENSORS, marker)
    (folder / ckpt.META).write_text("{}")
    with pytest.raises(VideostarError, match="not a readable checkpoint"):
        ckpt.read_state(folder)
    assert not marker.exists()


def test_state_round_trips_tensors_rng_and_optimizer(tmp_path: Path):
    import random

    import numpy as np

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    rng, rng_meta = ckpt.pack_rng()
    optim, optim_meta = ckpt.pack_optimizer(opt.state_dict())
    tensors = {f"rng.{k}": v for k, v in rng.items()} | {f"optimizer.{k}": v for k, v in optim.items()}
    ckpt.write_state(tmp_path / "s", tensors, {"rng": rng_meta, "optimizer": optim_meta})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    back, meta = ckpt.read_state(tmp_path / "s")
    ckpt.unpack_rng(ckpt.prefixed(back, "rng"), meta["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fresh.load_state_dict(ckpt.unpack_optimizer(ckpt.prefixed(back, "optimizer"), meta["optimizer"]))
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(fresh.state_dict()["state"][0][k], v)
    assert not list((tmp_path / "s").glob("*.pt"))


_ANSWERS = {
    # label type: (label value, a unit of text repeated to 1 MiB that makes its parser work)
    "class": ("jumping over box", "a person jumpin over the bx near 3 boxes. "),
    "sentence": ("a person is jumping over a box", "A persn is jumpng over the fence today! "),
    "sentence_sequence": (["a person jumps", "the person lands"], "The person lands. A person jumps; "),
    "sequence": (["forward somersault", "pike twist"], "forward pike somersault twist forward "),
    "float": (85.0, "score score: 84 points 12 m 5253B scored about "),
    "timestamp": (0.3, "at 12% then 0.9, 7,000 and -.5 "),
    "temporal_range": ([0.2, 0.5], "from 0.1 to 0.9, 0.95-0.97 "),
    "bbox": ([10, 20, 30, 40], "[1,2,3,4] (5, 6, 7, 8) "),
    "yes_no": ("yes", "no dog, yes no because no. No "),
    "multiple_choice": ("B", "(A) option C. B) answer is D A "),
}
GUARD_S = 30.0
"""Not a speed claim: measured 0.05-0.6 s per type alone, up to 3.9 s with the 2 cores shared by
several test runs; the bound only fails on a return of quadratic parsing (before the fix the float
verifier took 0.8 / 3.0 / 13 s on 32 / 64 / 128 KiB of this input: ~14 min at 1 MiB)."""


@pytest.mark.parametrize("label_type", sorted(_ANSWERS))
def test_one_megabyte_answer_per_label_type(label_type: str):
    value, unit = _ANSWERS[label_type]
    answer = (unit * ((1 << 20) // len(unit) + 1))[: 1 << 20]
    name = "score" if label_type == "float" else "label"
    started = time.perf_counter()
    verdict = get_verifier(label_type, VerifyConfig()).check(answer, value, name)
    seconds = time.perf_counter() - started
    print(f"{label_type}: 1 MiB in {seconds:.3f} s ({verdict.reason[:60]})")
    assert verdict.reason and seconds < GUARD_S


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_share_one_group_readable_mode(tmp_path: Path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {})
        write_jsonl(tmp_path / "r.jsonl", [{"id": "a"}])
        appender = JsonlAppender(tmp_path / "answers.jsonl")
        appender.write([{"id": "a"}])
        appender.finish()
        (tmp_path / "plain.txt").write_text("x")
        folder = tmp_path / ".model.tmp"
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "w.bin").write_bytes(b"0")
        os.chmod(folder, 0o700)
        publish_mode(folder)
    finally:
        os.umask(old)
    files = ["m.json", "r.jsonl", "answers.jsonl", "plain.txt", ".model.tmp/sub/w.bin"]
    assert {_mode(tmp_path / f) for f in files} == {0o644}
    assert {_mode(folder), _mode(folder / "sub")} == {0o755}


def test_debris_of_killed_saves_is_removed_with_a_line(tmp_path: Path, capsys):
    (tmp_path / ".model.x1y2z3").mkdir()
    (tmp_path / ".model.x1y2z3" / "adapter.safetensors").write_bytes(b"half")
    (tmp_path / "model-other").mkdir()
    (tmp_path / "checkpoints" / ".step-4.tmp").mkdir(parents=True)
    assert clean_save_debris(tmp_path / "model") == [tmp_path / ".model.x1y2z3"]
    assert clean_debris(tmp_path / "checkpoints", (".step-*.tmp",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "model-other"]
    assert not list((tmp_path / "checkpoints").iterdir())
    err = capsys.readouterr().err.splitlines()
    assert err == [f"cleanup: removed the temp folder of an interrupted save: {tmp_path / '.model.x1y2z3'}",
                   "cleanup: removed the temp folder of an interrupted save: "
                   f"{tmp_path / 'checkpoints' / '.step-4.tmp'}"]
