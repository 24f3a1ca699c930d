"""Fault suite: every step is safe to retry after a kill at any point.

A training step killed between saving its model and writing ``metrics.json`` completes on the
retry (from the model's card) instead of refusing its own model; corrupt or refused checkpoint
and model files are one line naming the file and the reason, and PPO resumes from the
checkpoint before an unreadable one; PPO keeps only its newest checkpoints.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_CONFIG

from videostar.cli import main
from videostar.data.records import read_records, write_jsonl
from videostar.errors import VideostarError
from videostar.training import state as ckpt
from videostar.training.checkpoints import Checkpoints

pytestmark = pytest.mark.faults


def _config(tmp_path: Path, **sft: object) -> Path:
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg.pop("tracking")
    cfg["sft"] |= {"epochs": 1, "checkpoint_steps": 1, **sft}
    path = tmp_path / f"run-{len(sft)}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _verified(synthetic_data: Path, path: Path) -> Path:
    recs = [r for r in read_records(synthetic_data) if r.task == "action_recognition"][:6]
    write_jsonl(path, [r.to_json() | {"answer": r.meta["reference"]} for r in recs])
    return path


def test_sft_killed_after_saving_its_model_completes_on_retry(tiny_base: Path, synthetic_data: Path,
                                                              tmp_path: Path, capsys):
    """The state a kill between the model's save and metrics.json leaves (model/ whole, no
    metrics.json, the checkpoints folder still there) completes without training again; another
    run's model in that place is refused in one line."""
    data = _verified(synthetic_data, tmp_path / "verified.jsonl")
    out = tmp_path / "sft"
    args = ["sft", "--base-model", str(tiny_base), "--data", str(data), "--out", str(out)]
    assert main(["--config", str(_config(tmp_path)), *args]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").unlink()
    (out / "model-checkpoints" / "step-1").mkdir(parents=True)  # not yet removed at the kill
    weights = {p.name: p.read_bytes() for p in (out / "model").iterdir()}
    capsys.readouterr()

    assert main(["--config", str(_config(tmp_path)), *args]) == 0
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert {p.name: p.read_bytes() for p in (out / "model").iterdir()} == weights
    assert not (out / "model-checkpoints").exists()
    assert "already holds this run's model (saved before its metrics); completing" in capsys.readouterr().err

    (out / "metrics.json").unlink()
    assert main(["--config", str(_config(tmp_path, lr=0.001)), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: {out / 'model'}: already exists and holds another run's model (other "
                       "base, data or settings); refusing to overwrite it")
    assert "Traceback" not in "\n".join(err)


def _sft_checkpoint(folder: Path) -> tuple[Checkpoints, dict, torch.optim.Optimizer, object]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    params = dict(model.named_parameters())
    optim = torch.optim.AdamW(params.values(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: 1.0)
    model(torch.ones(1, 3)).sum().backward()
    optim.step()
    sched.step()
    checkpoints = Checkpoints(folder, {"run": 1}, every=1)
    checkpoints.claim()
    checkpoints.save(1, params, optim, sched, {"losses": [1.0]})
    return checkpoints, params, optim, sched


@pytest.mark.fast
def test_corrupt_training_checkpoint_state_is_one_line(tmp_path: Path, capsys):
    checkpoints, params, optim, sched = _sft_checkpoint(tmp_path / "ck")
    meta_path = tmp_path / "ck" / "step-1" / ckpt.META
    meta = json.loads(meta_path.read_text())

    meta_path.write_text(json.dumps(meta | {"world_size": "abc"}))
    assert checkpoints.latest() is None  # passed over (training starts over), with its reason
    assert capsys.readouterr().err.strip() == (
        f"checkpoint: ignoring the incomplete {tmp_path / 'ck' / 'step-1'} (no state.json with a rank "
        "count (world_size is 'abc'))")

    meta_path.write_text(json.dumps(meta | {"optimizer": meta["scheduler"]}))
    path = checkpoints.latest()
    assert path is not None
    with pytest.raises(VideostarError) as caught:
        checkpoints.load(path, params, optim, sched)
    assert str(caught.value).startswith(f"{meta_path}: does not hold a checkpoint of this run (KeyError: ")

    meta_path.write_text("{not json")
    assert checkpoints.latest() is None


def test_refused_pickled_model_file_is_one_line(tiny_base: Path, synthetic_data: Path, tmp_path: Path,
                                                capsys):
    """A model whose weights are a pickle that torch's weights-only loader refuses: one line naming
    the file, exit 1, and the pickle's code never ran."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil"
    shutil.copytree(tiny_base, evil)
    for p in evil.glob("*.safetensors"):
        p.unlink()
    torch.save({"lm_head.weight": Payload()}, evil / "pytorch_model.bin")
    capsys.readouterr()
    assert main(["generate", "--model", str(evil), "--data", str(synthetic_data),
                 "--out", str(tmp_path / "gen")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {evil / 'pytorch_model.bin'}: refused by torch's weights-only "
                              "loader")
    assert "Traceback" not in "\n".join(err)
    assert not marker.exists()


def test_ppo_keeps_its_newest_checkpoints_and_resumes_past_a_corrupt_one(
        tiny_base: Path, synthetic_data: Path, colour_reward_model, tmp_path: Path, capsys):
    from videostar.config import LoraConfig, PPOConfig, VideoConfig
    from videostar.rlaif.ppo import train_ppo

    recs = [r for r in read_records(synthetic_data) if r.task == "action_recognition"]
    rm_path, _ = colour_reward_model
    cfg = PPOConfig(steps=3, batch_size=2, minibatch_size=2, lr=1e-3, max_new_tokens=4, heldout_samples=1,
                    lora=LoraConfig(r=8, alpha=16, dropout=0.0), save_every=1, ppo_epochs=1)
    args = (str(tiny_base), str(rm_path), recs[:4], recs[40:42])
    folder = tmp_path / "out" / "checkpoints"

    def run(model_out: str, steps: int) -> dict:
        cfg.steps = steps
        checkpoints = Checkpoints(folder, {}, cfg.save_every, cfg.keep_checkpoints)
        return train_ppo(*args, tmp_path / model_out, checkpoints, cfg, VideoConfig(num_frames=4),
                         lambda r: r.question, progress=False)

    run("a", 3)
    assert sorted(p.name for p in folder.iterdir()) == ["step-2", "step-3"]  # keep_checkpoints: 2

    meta_path = folder / "step-3" / ckpt.META
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(meta | {"optimizer": {"lr_lambdas": [None]}}))
    capsys.readouterr()
    again = run("b", 4)
    assert again["resumed_from"] == 2 and again["steps"] == 4
    assert f"checkpoint: {meta_path}: does not hold a checkpoint of this run (KeyError: " \
           in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["step-3", "step-4"]

    for step in ("step-3", "step-4"):
        (folder / step / ckpt.META).write_text(json.dumps({"step": "x"}))
    newest = re.escape(f"{folder / 'step-4' / ckpt.META}: does not hold")
    with pytest.raises(VideostarError, match="^" + newest):
        run("c", 5)


def test_decide_retried_after_publishing_completes(tmp_path: Path):
    """A decide killed after it published the cycle's training data (``cycle-0/sft/train.jsonl``)
    and logged the cycle is retried: the retry completes with the same summary and decision."""
    from videostar import layout
    from videostar.config import RunConfig
    from videostar.data.records import write_json
    from videostar.star import steps

    cfg = RunConfig()
    cfg.tracking.mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg.tracking.store = str(tmp_path / "store")
    cfg.tracking.system_metrics = False
    row = {"id": "a", "video": "v.mp4", "question": "What?", "label": {"object": "red box"},
           "label_type": ["class"], "task": "t", "answer": "a red box"}
    ver, rat, sft, model = (tmp_path / n for n in ("verify", "rationalize", "sft", "model"))
    steps.verify([_rows(tmp_path / "answers.jsonl", [row])], ver, cfg)
    write_jsonl(rat / layout.VERIFIED, [])
    write_json(rat / layout.METRICS, {"passed": 0, "total": 0})
    write_json(sft / layout.METRICS, {"train_loss": 0.5, "examples": 1})
    model.mkdir()
    (model / "adapter_config.json").write_text("{}")
    parent = steps.start(cfg, "pipeline-run-1", tmp_path / "start")
    first = steps.decide(0, ver, [rat], sft, model, [], cfg, parent)
    again = steps.decide(0, ver, [rat], sft, model, [], cfg, parent)
    assert again == first
    assert [p.name for p in (tmp_path / "store").rglob("train.jsonl")] == ["train.jsonl"]


def _rows(path: Path, rows: list[dict]) -> Path:
    write_jsonl(path, rows)
    return path
