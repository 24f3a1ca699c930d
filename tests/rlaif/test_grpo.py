"""GRPO: its group math by hand, the verifier as the reward, the config and pipeline choice, a
run that resumes from its checkpoint, and the effect: the held-out pass rate rises."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_CONFIG

from videostar.config import GRPOConfig, LoraConfig, VerifyConfig, VideoConfig, config_from_dict, load_config
from videostar.data.records import Record, read_rows
from videostar.data.synthetic import write_kinetics_split
from videostar.errors import ConfigError
from videostar.model import read_card
from videostar.rlaif.grpo import group_advantages, kl_k3, mixed_reward, verifier_reward


def _record(colour: str = "red", shape: str = "circle") -> Record:
    return Record(id="v/0", video="v.mp4", question="What is happening in this video?",
                  label={"object": f"{colour} {shape}"}, label_type=["class"], task="action_recognition")


@pytest.mark.fast
def test_group_advantages_by_hand() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0,  # one of four passed
                            1.0, 1.0, 1.0, 1.0,  # all passed: nothing to learn
                            0.0, 1.0, 0.0, 1.0])
    adv, flat = group_advantages(rewards, 4, eps=0.0)
    # group 0: mean 0.25, unbiased std sqrt(0.25) = 0.5 -> (1 - 0.25) / 0.5 = 1.5, -0.5 otherwise
    assert adv[:4].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5])
    assert adv[4:8].tolist() == [0.0] * 4
    # group 2: mean 0.5, std sqrt(1/3)
    assert adv[8:].tolist() == pytest.approx([-0.5 * math.sqrt(3), 0.5 * math.sqrt(3)] * 2)
    assert flat.tolist() == [False, True, False]
    assert float(adv[:4].sum()) == pytest.approx(0.0)  # the group is its own baseline
    # eps keeps a group of near-equal rewards from blowing up
    adv, _ = group_advantages(torch.tensor([0.5, 0.5 + 1e-6]), 2, eps=1e-4)
    assert adv.abs().max() < 0.01


@pytest.mark.fast
def test_k3_kl_is_zero_at_the_reference_and_positive_elsewhere() -> None:
    logp = torch.log(torch.tensor([[0.5, 0.2, 0.9]]))
    assert kl_k3(logp, logp).tolist() == [[0.0, 0.0, 0.0]]
    ref = torch.log(torch.tensor([[0.25, 0.4, 0.9]]))
    kl = kl_k3(logp, ref)
    # d = log(ref / p): exp(d) - d - 1
    expected = [0.5 - math.log(0.5) - 1, 2.0 - math.log(2.0) - 1, 0.0]
    assert kl[0].tolist() == pytest.approx(expected, abs=1e-6)
    # unbiased: the mean over samples of p is KL(p || ref) for a two-outcome distribution
    p, q = torch.tensor([0.7, 0.3]), torch.tensor([0.4, 0.6])
    mean = (p * kl_k3(p.log(), q.log())).sum()
    assert float(mean) == pytest.approx(float((p * (p / q).log()).sum()), abs=1e-6)


@pytest.mark.fast
def test_the_verifier_is_the_reward_and_a_reward_model_is_mixed_in_by_weight() -> None:
    records = [_record("red", "circle")] * 3
    answers = ["A red circle moves across.", "A blue square.", "I see a red circle."]
    assert verifier_reward(VerifyConfig())(records, answers).tolist() == [1.0, 0.0, 1.0]

    def rm(prompts, responses, frames):
        return torch.tensor([0.5, 2.0, -1.0])

    mixed, passed = mixed_reward(VerifyConfig(), rm, 0.1)(records, ["q"] * 3, answers, [None] * 3)
    assert mixed.tolist() == pytest.approx([1.05, 0.2, 0.9]) and passed.tolist() == [1.0, 0.0, 1.0]
    def unused(*args):
        raise AssertionError("the reward model was asked with weight 0")

    alone, passed = mixed_reward(VerifyConfig(), unused, 0.0)(records, ["q"] * 3, answers, [None] * 3)
    assert alone.tolist() == passed.tolist() == [1.0, 0.0, 1.0]  # weight 0: the score is never asked


@pytest.mark.fast
def test_a_scenegraph_record_is_rewarded_by_its_graph_path() -> None:
    """STEP's records: the graph_path verifier decides (the answer and the path's steps, in order)."""
    steps = [{"subject": "red circle", "predicates": ["touching"], "object": "blue square"},
             {"subject": "blue square", "predicates": ["moving past"], "object": "green triangle"}]
    rec = Record(id="g/0", video="v.mp4", question="?", task="step_relation_chain",
                 label={"path": {"answer": "green triangle", "steps": steps}}, label_type=["graph_path"])
    s1 = "First the red circle touches the blue square."
    s2 = "Then the blue square moves past the green triangle."
    end = "The answer is the green triangle."
    passed = verifier_reward(VerifyConfig())([rec] * 3, [f"{s1} {s2} {end}", f"{s2} {s1} {end}", end])
    assert passed.tolist() == [1.0, 0.0, 0.0]  # the right answer alone, or out of order, earns nothing


@pytest.mark.fast
@pytest.mark.parametrize(("override", "field"), [
    ({"grpo": {"group_size": 1}}, "rlaif.grpo.group_size"),
    ({"grpo": {"minibatch_size": 65}}, "rlaif.grpo.minibatch_size"),
    ({"grpo": {"kl_coef": -0.1}}, "rlaif.grpo.kl_coef"),
    ({"grpo": {"reward_model_weight": float("nan")}}, "rlaif.grpo.reward_model_weight"),
    ({"algorithm": "dpo"}, "rlaif.algorithm"),
])
def test_bad_grpo_config_names_the_field(override: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: invalid value"):
        config_from_dict({"rlaif": override})


def _pipeline_tasks(cfg) -> dict:
    import tempfile

    from videostar.pipelines.submit import compile_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        spec, _ = yaml.safe_load_all(compile_pipeline(cfg, Path(tmp) / "p.yaml").read_text())
    (dag,) = [c["dag"] for c in spec["components"].values() if "dag" in c
              and any(t["taskInfo"]["name"].startswith("rlaif-") for t in c["dag"]["tasks"].values())]
    return {t["taskInfo"]["name"]: t for t in dag["tasks"].values()}


@pytest.mark.fast
def test_the_pipeline_runs_grpo_in_ppos_place() -> None:
    cfg = load_config(TINY_CONFIG)
    cfg.rlaif.sft_model = "s3://models/sft"
    cfg.rlaif.algorithm = "ppo"
    ppo = _pipeline_tasks(cfg)
    cfg.rlaif.algorithm = "grpo"
    grpo = _pipeline_tasks(cfg)
    assert "rlaif-ppo" in ppo and "rlaif-grpo" not in ppo
    assert set(grpo) == set(ppo) - {"rlaif-ppo"} | {"rlaif-grpo"}  # preferences and reward model still run
    wired = grpo["rlaif-grpo"]["inputs"]["artifacts"]
    assert wired["reward_model"]["taskOutputArtifact"]["producerTask"].startswith("reward-model")
    assert wired["preferences"]["taskOutputArtifact"]["producerTask"].startswith("preferences")
    policy = grpo["rlaif-evaluate"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
    assert policy == {"outputArtifactKey": "policy", "producerTask": "grpo"}


# ----------------------------------------------------------------------------- tiny model


def _colour_records(synthetic_data: Path) -> list[Record]:
    return [Record.from_json(r) for r in read_rows(synthetic_data) if r["task"] == "action_recognition"]


def _checkpoints(out: Path, cfg: GRPOConfig):
    from videostar.training.checkpoints import Checkpoints

    return Checkpoints(out / "checkpoints", {}, cfg.save_every, cfg.keep_checkpoints)


def _run(tiny_base: Path, train: list[Record], heldout: list[Record], out: Path, cfg: GRPOConfig,
         checkpoints: Path | None = None, **kw):
    from videostar.rlaif.grpo import train_grpo

    return train_grpo(str(tiny_base), train, heldout, out / "policy", _checkpoints(checkpoints or out, cfg),
                      cfg, VideoConfig(num_frames=8), VerifyConfig(), lambda r: r.question, progress=False,
                      **kw)


def test_grpo_run_resumes_from_its_last_checkpoint(tiny_base: Path, synthetic_data: Path, tmp_path: Path):
    recs = _colour_records(synthetic_data)
    cfg = GRPOConfig(steps=2, batch_size=2, group_size=2, lr=1e-3, max_new_tokens=8, heldout_samples=1,
                     minibatch_size=4, save_every=1, lora=LoraConfig(r=8, alpha=16, dropout=0.0))
    args = (tiny_base, recs[:8], recs[40:42])
    first = _run(*args, tmp_path / "a", cfg, tmp_path / "out")
    cfg.steps = 3  # a retried (or extended) run: continues at step 3, not from scratch
    logged: list[dict] = []
    again = _run(*args, tmp_path / "b", cfg, tmp_path / "out", on_step=logged.append)
    assert again["resumed_from"] == 2 and [r["step"] for r in logged] == [3]
    assert again["heldout_reward_before"] == first["heldout_reward_before"]
    assert [h["step"] for h in again["history"]] == [1, 2, 3]
    straight = _run(*args, tmp_path / "c", cfg, tmp_path / "straight")
    # the resumed step 3 sampled what the uninterrupted run's step 3 sampled, from the same weights
    assert again["history"][-1]["response_length"] == straight["history"][-1]["response_length"]
    assert again["history"][-1]["kl"] == pytest.approx(straight["history"][-1]["kl"], abs=1e-4)
    assert again["heldout_reward_after"] == straight["heldout_reward_after"]
    with pytest.raises(Exception, match="already exists; refusing to overwrite"):
        _run(*args, tmp_path / "b", cfg, tmp_path / "out")


EFFECT = {"steps": 12, "batch_size": 8, "group_size": 4, "lr": 5e-4, "kl_coef": 0.04, "max_new_tokens": 16,
          "minibatch_size": 16, "heldout_samples": 4}
"""Chosen on the seed-100 base and seed-200 data under ATEN_CPU_CAPABILITY=default: 0.203 -> 0.406
held-out pass rate at KL 0.58; lr 1e-3 x 8 steps moved KL past 1 and, on this fixture under the
default kernels, gained only 0.03 (0.219 -> 0.250), 8 steps of groups of 8 0.203 -> 0.328. On this
fixture's base under the default kernels these settings gained 0.047 (0.266 -> 0.312, KL 1.34):
the gain is asserted, not its size, until settings with room on every kernel level are found."""


@pytest.mark.slow  # the CI tier, which runs it under a second CPU level too
@pytest.mark.trains
def test_grpo_with_the_verifier_raises_the_held_out_pass_rate(
    tiny_base: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    from videostar.model import load_model, read_card

    recs = _colour_records(synthetic_data)
    cfg = GRPOConfig(**EFFECT, lora=LoraConfig(r=8, alpha=16, dropout=0.0))
    logged: list[dict] = []
    result = _run(tiny_base, recs[:32], recs[32:], tmp_path, cfg, on_step=logged.append)
    assert [r["step"] for r in logged] == list(range(1, cfg.steps + 1))
    for rec in logged:
        assert {"reward", "verifier_pass_rate", "kl", "response_length", "entropy", "clipfrac",
                "zero_variance_groups"} <= set(rec)
        assert rec["reward"] == rec["verifier_pass_rate"]  # the verifier alone: no reward model
        assert 0.0 <= rec["zero_variance_groups"] <= 1.0 and math.isfinite(rec["kl"])
    before, after = result["heldout_reward_before"], result["heldout_reward_after"]
    print(f"held-out pass rate before {before:.3f}, after {after:.3f}, final KL {result['final_kl']:.3f}")
    assert after > before, (before, after, logged)
    card = read_card(tmp_path / "policy")
    assert card["kind"] == "lora" and card["base"] == str(tiny_base) and card["stage"] == "grpo"
    load_model(str(tmp_path / "policy"))  # the policy loads like any videostar model


@pytest.mark.slow  # four KFP tasks in subprocesses; the CI tier
def test_grpo_rlaif_stage_runs_through_kfp_local(tiny_base: Path, synthetic_data: Path, tmp_path: Path):
    """The RLAIF stage alone with ``rlaif.algorithm: grpo``: preferences and the reward model run,
    grpo takes ppo's place, and the evaluate step scores its policy."""
    from videostar.pipelines.local import run_local

    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw.pop("tracking")
    raw["pipeline"] |= {"base_model": str(tiny_base), "dataset": str(synthetic_data)}
    raw["rlaif"] |= {"sft_model": str(tiny_base), "algorithm": "grpo", "prompts": 24, "pairs_per_prompt": 2}
    raw["rlaif"]["reward_model"]["epochs"] = 1
    raw["rlaif"]["grpo"] = {"steps": 2, "batch_size": 4, "group_size": 2, "max_new_tokens": 8,
                            "minibatch_size": 8, "heldout_samples": 1}
    for suite, seed in zip(raw["evaluate"]["suites"], (1, 2), strict=True):  # reported, validation
        csv = write_kinetics_split(tmp_path / f"clips-{seed}", 4, seed=seed)
        suite["data"] = {"csv": str(csv), "videos": str(csv.parent / "videos")}
    run = run_local(config_from_dict(raw), tmp_path / "run")
    grpo = run.rlaif["grpo"]
    assert grpo["steps"] == 2 and "ppo" not in run.rlaif
    assert run.rlaif["reward_model"]["heldout_accuracy"] is not None  # still trained and reported
    assert any(k.startswith("eval.") for k in run.rlaif["scores"])
    assert read_card(Path(grpo["model"]))["stage"] == "grpo"


def test_grpo_policy_is_logged_as_ppos(mlflow_server: str, tmp_path: Path, monkeypatch) -> None:
    """The GRPO policy is the same rl-policy LoggedModel as PPO's, aliased ``aligned``; its
    numbers are ``grpo.*`` and every step's statistics are a ``grpo.*`` history."""
    from mlflow import MlflowClient

    from videostar import tracking
    from videostar.config import RunConfig

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    cfg = RunConfig()
    cfg.tracking.mlflow_uri, cfg.tracking.experiment = mlflow_server, "grpo-tracking"
    cfg.tracking.registered_policy, cfg.tracking.system_metrics = "grpo-policy", False
    parent = tracking.start_run(cfg, "grpo-run")
    tracker = tracking.tracker(cfg, parent)
    history = [{"step": k, "reward": 0.25 * k, "verifier_pass_rate": 0.25 * k, "kl": 0.1 * k,
                "zero_variance_groups": 0.5, "seconds": 1.0} for k in (1, 2)]
    with tracker.step_run("rlaif") as run_id:
        log = tracker.rl_logger(run_id, "grpo")
        for record in history:
            log(record)
    adapter = tmp_path / "policy"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 4}))
    tracker.log_policy({"heldout_reward_before": 0.2, "heldout_reward_after": 0.4, "history": history},
                       str(adapter), "grpo")
    client = MlflowClient(mlflow_server)
    assert [m.value for m in client.get_metric_history(run_id, "grpo.verifier_pass_rate")] == [0.25, 0.5]
    assert client.get_metric_history(run_id, "grpo.seconds") == []  # statistics, not timings
    version = client.get_model_version_by_alias("grpo-policy", "aligned")
    model = client.get_logged_model(version.source.removeprefix("models:/"))
    assert model.model_type == tracking.POLICY_MODEL and model.tags["algorithm"] == "grpo"
    assert {m.key: m.value for m in model.metrics} == {"grpo.heldout_reward_before": 0.2,
                                                       "grpo.heldout_reward_after": 0.4}
    artifacts = [a.path for a in client.list_artifacts(parent, "plots")]
    assert "plots/grpo_curves.png" in artifacts


@pytest.mark.fast
def test_grpo_refuses_a_launcher_it_does_not_use() -> None:
    with pytest.raises(ConfigError, match=r"^pipeline.ppo.launcher.kind: invalid value \(local when"):
        config_from_dict({"rlaif": {"algorithm": "grpo"},
                          "pipeline": {"ppo": {"launcher": {"kind": "torchrun", "procs_per_node": 2}}}})
    config_from_dict({"pipeline": {"ppo": {"launcher": {"kind": "torchrun", "procs_per_node": 2}}}})  # PPO's
