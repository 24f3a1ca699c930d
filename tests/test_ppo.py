"""PPO math against hand-computed values, and a short PPO run on the tiny model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from videostar.train.ppo import (
    entropy_from_logits,
    gae,
    kl_penalty,
    masked_mean,
    policy_loss,
    token_rewards,
    value_loss,
    whiten,
)


def test_masked_mean_and_whiten_ignore_padding() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    assert masked_mean(x, mask).item() == pytest.approx(2.0)
    w = whiten(x, mask)
    # mean 2, unbiased std 1 -> [-1, 0, 1], padding -> 0
    assert w.tolist()[0] == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-4)
    assert whiten(x, mask, shift_mean=False).tolist()[0] == pytest.approx([1.0, 2.0, 3.0, 0.0], abs=1e-4)


def test_gae_with_gamma_lambda_one_is_reward_to_go_minus_value() -> None:
    rewards = torch.tensor([[0.1, -0.2, 1.0, 0.0], [0.0, 0.5, 0.0, 0.0]])
    values = torch.tensor([[0.3, 0.2, 0.4, 9.0], [7.0, 0.1, 0.6, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 0]])  # right-padded; left+right padded
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert adv[0].tolist() == pytest.approx([0.9 - 0.3, 0.8 - 0.2, 1.0 - 0.4, 0.0])
    assert adv[1].tolist() == pytest.approx([0.0, 0.5 - 0.1, 0.0 - 0.6, 0.0])
    assert ret[0].tolist() == pytest.approx([0.9, 0.8, 1.0, 0.0])


def test_gae_discounted_by_hand() -> None:
    rewards, values = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.2]])
    adv, _ = gae(rewards, values, torch.ones(1, 2), gamma=0.9, lam=0.5)
    d1 = 1.0 - 0.2
    d0 = 0.0 + 0.9 * 0.2 - 0.5
    assert adv[0].tolist() == pytest.approx([d0 + 0.9 * 0.5 * d1, d1])


def test_kl_and_token_rewards() -> None:
    kl = kl_penalty(torch.tensor([[-1.0, -2.0, -0.5]]), torch.tensor([[-1.5, -2.0, -1.0]]))
    assert kl.tolist()[0] == pytest.approx([0.5, 0.0, 0.5])
    kl2 = torch.cat([kl, kl])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    r = token_rewards(torch.tensor([2.0, 3.0]), kl2, mask, kl_coef=0.1,
                      no_eos=torch.tensor([True, False]), eos_penalty=1.0, length_penalty=0.01)
    assert r[0].tolist() == pytest.approx([-0.05, 0.0, -0.05 + 2.0 - 1.0 - 0.03])
    assert r[1].tolist() == pytest.approx([-0.05, 0.0 + 3.0 - 0.02, 0.0])


def test_policy_loss_clips_when_ratio_leaves_the_trust_region() -> None:
    mask = torch.ones(1, 2)
    old = torch.zeros(1, 2)
    new = torch.tensor([[math.log(1.5), math.log(1.1)]])
    adv = torch.tensor([[1.0, 1.0]])
    loss, clipfrac = policy_loss(new, old, adv, mask, clip=0.2)
    # token 0: ratio 1.5 clipped to 1.2 -> -1.2; token 1: ratio 1.1 -> -1.1
    assert loss.item() == pytest.approx(-(1.2 + 1.1) / 2)
    assert clipfrac.item() == pytest.approx(0.5)
    # negative advantage: ratio 1.5 is not clipped (pessimistic bound), -A*r = 1.5
    loss, clipfrac = policy_loss(new, old, -adv, mask, clip=0.2)
    assert loss.item() == pytest.approx((1.5 + 1.1) / 2)
    assert clipfrac.item() == 0.0


def test_value_loss_takes_the_larger_of_clipped_and_unclipped() -> None:
    values, old, returns = torch.tensor([[1.0, 0.1]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    loss, clipfrac = value_loss(values, old, returns, torch.ones(1, 2), clip=0.2)
    # token 0: unclipped 0, clipped (0.2-1)^2=0.64 -> 0.64; token 1: both (0.1-1)^2=0.81
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81) / 2)
    assert clipfrac.item() == pytest.approx(0.5)


def test_entropy_of_uniform_logits() -> None:
    logits = torch.zeros(1, 3, 8)
    assert entropy_from_logits(logits, torch.ones(1, 3)).item() == pytest.approx(math.log(8))


# ----------------------------------------------------------------------------- tiny model


def _colour_data(synthetic_data: Path):
    from videostar.data.records import Record, read_rows
    from videostar.video import read_frames

    recs = [Record.from_json(r) for r in read_rows(synthetic_data) if r["task"] == "action_recognition"]
    frames = {r.id: read_frames(r.video, 8) for r in recs}
    return recs, frames


def _colour_reward(colour_of: dict[int, str]):
    """+1 when the response names the video's true colour and no other colour."""
    from videostar.data.synthetic import COLOURS

    def reward(prompts: list[str], responses: list[str], frames: list[np.ndarray]) -> torch.Tensor:
        out = []
        for text, f in zip(responses, frames, strict=True):
            text, true = text.lower(), colour_of[id(f)]
            out.append(float(true in text and not any(c in text for c in COLOURS if c != true)))
        return torch.tensor(out)

    return reward


def _trainer(tiny_base: Path, reward, **cfg):
    from videostar.config import LoraConfig
    from videostar.model import add_lora, load_model
    from videostar.train.ppo import PPOConfig, PPOTrainer

    torch.manual_seed(0)
    lm = add_lora(load_model(str(tiny_base), device="cpu"), LoraConfig(r=8, alpha=16, dropout=0.0))
    return PPOTrainer(lm, reward, PPOConfig(**{"max_new_tokens": 16, "minibatch_size": 4, **cfg}))


def test_ppo_raises_held_out_reward(tiny_base: Path, synthetic_data: Path) -> None:
    recs, frames = _colour_data(synthetic_data)
    train, held = recs[:16], recs[32:48]
    reward = _colour_reward({id(frames[r.id]): r.meta["colour"] for r in recs})
    trainer = _trainer(tiny_base, reward, lr=LR)

    def held_out(samples: int = 3) -> float:
        torch.manual_seed(123)
        scores = []
        for _ in range(samples):
            vids = [frames[r.id] for r in held]
            _, texts = trainer.sample([r.question for r in held], vids)
            scores.append(float(reward([], texts, vids).mean()))
        return float(np.mean(scores))

    before = held_out()
    for _ in range(STEPS):
        log = trainer.step([r.question for r in train], [frames[r.id] for r in train])
        assert math.isfinite(log["kl"]) and math.isfinite(log["value_loss"])
        assert {"reward", "kl", "entropy", "clipfrac", "value_loss"} <= set(log)
    after = held_out()
    assert after > before, (before, after, trainer.history)


LR, STEPS = 1e-3, 12


def test_checkpoint_resumes_at_saved_step(tiny_base: Path, synthetic_data: Path, tmp_path: Path) -> None:
    recs, frames = _colour_data(synthetic_data)
    batch = recs[:4]
    reward = _colour_reward({id(frames[r.id]): r.meta["colour"] for r in recs})
    prompts, vids = [r.question for r in batch], [frames[r.id] for r in batch]
    trainer = _trainer(tiny_base, reward, lr=1e-3, ppo_epochs=1)
    trainer.step(prompts, vids)
    trainer.step(prompts, vids)
    trainer.save_checkpoint(tmp_path / "ckpt")
    head = {k: v.clone() for k, v in trainer.value_head.state_dict().items()}
    expected = trainer.step(prompts, vids)  # step 3 from the saved state

    resumed = _trainer(tiny_base, reward, lr=1e-3, ppo_epochs=1)
    assert resumed.load_checkpoint(tmp_path / "ckpt") == 2
    assert resumed.step_count == 2 and len(resumed.history) == 2
    for k, v in resumed.value_head.state_dict().items():
        assert torch.equal(v, head[k])
    state = resumed.optimizer.state_dict()["state"]
    assert state and all(int(s["step"]) == 2 for s in state.values())
    again = resumed.step(prompts, vids)
    assert again["step"] == 3
    assert again["reward"] == expected["reward"]
    assert again["kl"] == pytest.approx(expected["kl"], rel=1e-4, abs=1e-5)
