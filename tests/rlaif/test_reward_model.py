"""The VLM-RLAIF reward model: BT loss, last-token pooling, training on colour preferences, save/load."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import colour_preferences, colour_reward_config

from videostar.config import LoraConfig, VideoConfig
from videostar.model import add_lora, load_model, read_card
from videostar.rlaif.reward_model import (
    HEAD_FILE,
    Pair,
    RewardModel,
    bradley_terry_loss,
    last_token_index,
    load_reward_model,
    mean_response_logprob,
    pair_from_json,
    pairwise_accuracy,
    save_reward_model,
    train_reward_model,
)
from videostar.video import read_frames

LORA = LoraConfig(r=8, alpha=16, dropout=0.0)
VIDEO = VideoConfig(num_frames=8)


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_bradley_terry_loss_by_hand():
    loss = bradley_terry_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
    expected = (_softplus(-1.0) + _softplus(0.0)) / 2 + 1e-3 * 0.25
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    # The centering term sees the absolute mean of all four rewards; BT only the differences.
    loss = bradley_terry_loss(torch.tensor([3.0]), torch.tensor([1.0]), center_coef=0.1)
    assert float(loss) == pytest.approx(_softplus(-2.0) + 0.1 * 2.0, abs=1e-6)
    shifted = bradley_terry_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), center_coef=0.0)
    assert float(shifted) == pytest.approx(_softplus(-2.0), abs=1e-6)


def test_last_token_index_on_right_padding():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [2, 4, 0]


def test_mean_response_logprob_by_hand():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]]]))
    labels = torch.tensor([[-100, 1, 2]])  # token t is predicted at position t - 1
    expected = (math.log(0.25) + math.log(0.8)) / 2
    assert float(mean_response_logprob(logits, labels)) == pytest.approx(expected, abs=1e-6)


def test_likelihood_weight_adds_the_response_logprob_and_reloads(
    tiny_base: Path, synthetic_data: Path, tmp_path: Path
):
    torch.manual_seed(0)
    lm = load_model(str(tiny_base))
    lm.tuned_from = str(tiny_base)
    head_only = RewardModel(add_lora(lm, LORA)).eval()
    weighted = RewardModel(head_only.lm, head_only.head, likelihood_weight=2.0).eval()
    pairs = colour_preferences(synthetic_data)[:2]
    frames = [read_frames(p.video, VIDEO.num_frames) for p in pairs]
    prompts, answers = [p.prompt for p in pairs], [pairs[0].chosen, pairs[1].chosen + " It moves."]
    batch = head_only.encode(prompts, answers, frames)
    with torch.no_grad():
        gained = weighted(**batch) - head_only(**batch)
        by_row = []
        for p, a, f in zip(prompts, answers, frames, strict=True):  # each row alone, unpadded
            row = head_only.encode([p], [a], [f])
            logp = torch.log_softmax(lm.model(**{k: v for k, v in row.items() if k != "labels"})
                                     .logits[0, :-1].float(), -1)
            answer = row["labels"][0, 1:] != -100
            by_row.append(logp[answer].gather(1, row["labels"][0, 1:][answer, None]).mean())
    torch.testing.assert_close(gained, 2.0 * torch.stack(by_row), atol=1e-4, rtol=1e-4)
    # the weight is part of the saved model: a reloaded one scores the same
    out = save_reward_model(weighted, tmp_path / "rm")
    assert read_card(out)["likelihood_weight"] == 2.0
    torch.testing.assert_close(load_reward_model(out).score(prompts, answers, frames),
                               weighted.score(prompts, answers, frames), atol=1e-5, rtol=1e-4)


def test_reward_of_padded_row_equals_row_alone(tiny_base: Path, synthetic_data: Path):
    torch.manual_seed(0)
    rm = RewardModel(add_lora(load_model(str(tiny_base)), LORA)).eval()
    pairs = colour_preferences(synthetic_data)[:2]
    frames = [read_frames(p.video, VIDEO.num_frames) for p in pairs]
    prompts = [pairs[0].prompt, pairs[1].prompt]
    answers = [pairs[0].chosen, pairs[1].chosen + " It moves slowly across the frame."]
    batch = rm.encode(prompts, answers, frames)
    assert (batch["attention_mask"][0] == 0).any()  # the first row really is padded
    with torch.no_grad():
        together = rm(**batch)
        alone = torch.cat([rm(**rm.encode([p], [a], [f]))
                           for p, a, f in zip(prompts, answers, frames, strict=True)])
    assert together.shape == (2,)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    # Pooling the padded final position instead would give another reward.
    hidden = rm.backbone(**{k: v for k, v in batch.items() if k != "labels"},
                         output_hidden_states=True).hidden_states[-1]
    assert not torch.allclose(rm.head(hidden[0, -1].float()).squeeze(), together[0])


# The recipe of the colour_reward_model fixture (tests/conftest.py), trained again on more seeds.
def every_wrong_colour(records: Path, videos: set[str]) -> list[Pair]:
    """The reference of each recognition video in ``videos`` against each wrong colour: 3 pairs
    a video, where colour_preferences draws one (the base's look-alike colour among them)."""
    from videostar.data.records import read_rows
    from videostar.data.synthetic import COLOURS

    return [Pair(row["id"], row["video"], row["question"], row["meta"]["reference"],
                 row["meta"]["reference"].replace(row["meta"]["colour"], wrong))
            for row in read_rows(records)
            if row["task"] == "action_recognition" and row["video"] in videos
            for wrong in COLOURS if wrong != row["meta"]["colour"]]


@pytest.mark.slow  # the effect, in the CI tier; make test trains it through the CLI (test_rlaif)
@pytest.mark.trains
def test_trained_reward_model_prefers_true_colour(
    tiny_base: Path, synthetic_data: Path, colour_reward_model, tmp_path: Path
):
    """Held-out accuracy on every wrong colour of the 16 held-out videos (48 pairs), averaged
    over seeds 0 (the fixture), 1 and 2 of the same recipe.

    The tiny base's 1000 pretraining steps land on other weights under another CPU kernel level,
    and one seed on the 16 drawn pairs swung with it: 0.625 (CI's AVX2 EPYC), 0.75 (AVX-512),
    0.8125 (avx2), 0.9375 (default). This mean measured 0.82-0.90 (bases built under the three
    levels and from two more base seeds); an untrained head scores 0.52-0.56 on the same pairs.
    """
    prefs = colour_preferences(synthetic_data)
    assert len(prefs) == 48
    train, heldout = prefs[:32], prefs[32:]
    assert {p.video for p in train}.isdisjoint(p.video for p in heldout)
    every = every_wrong_colour(synthetic_data, {p.video for p in heldout})
    assert len(every) == 3 * len(heldout) and {(p.video, p.rejected) for p in heldout} <= {
        (p.video, p.rejected) for p in every}
    out, metrics = colour_reward_model
    assert metrics["train_loss"] < metrics["first_loss"]
    recipe = colour_reward_config(0)  # the fixture's: the same number of optimizer steps
    assert metrics["steps"] == math.ceil(len(train) / recipe.batch_size) * recipe.epochs
    accuracy = {0: pairwise_accuracy(load_reward_model(out), every, VIDEO)["accuracy"]}
    for seed in (1, 2):
        cfg = colour_reward_config(seed, checkpoint_steps=0)
        m = train_reward_model(str(tiny_base), train, every, tmp_path / f"seed-{seed}", cfg, VIDEO,
                               progress=False)
        assert m["train_loss"] < m["first_loss"], m
        accuracy[seed] = m["heldout_accuracy"]
    mean = sum(accuracy.values()) / len(accuracy)
    print(f"held-out accuracy by seed {accuracy}, mean {mean:.3f}")
    assert mean >= 0.7, (accuracy, metrics["heldout_accuracy"])  # chance: 0.5


def test_trained_reward_model_reloads(tiny_base: Path, synthetic_data: Path, colour_reward_model):
    heldout = colour_preferences(synthetic_data)[32:]
    out, metrics = colour_reward_model
    card = read_card(out)
    assert card["kind"] == "reward_model" and card["base"] == str(tiny_base)
    assert (out / HEAD_FILE).exists() and (out / "adapter_config.json").exists()

    loaded = load_reward_model(out)
    assert type(loaded.backbone).__name__.startswith("PeftModel")  # adapter kept, not merged
    # The saved model reproduces the trained one's held-out margins.
    reloaded = pairwise_accuracy(loaded, heldout, VIDEO)
    assert reloaded["accuracy"] == metrics["heldout_accuracy"]
    assert reloaded["margin"] == pytest.approx(metrics["heldout_margin"], rel=1e-4, abs=1e-5)
    frames = [read_frames(p.video, VIDEO.num_frames) for p in heldout]
    prompts = [p.prompt for p in heldout]
    responses = [p.chosen for p in heldout] + [p.rejected for p in heldout]
    scores = loaded.score(prompts * 2, responses, frames * 2, batch_size=3)
    n = len(heldout)  # score() ranks the pairs as pairwise_accuracy does
    assert scores.shape == (2 * n,)
    assert float((scores[:n] > scores[n:]).float().mean()) == pytest.approx(metrics["heldout_accuracy"])
    # Same scores from a second load given the base explicitly (as a pipeline step would).
    again = load_reward_model(out, adapter_base=str(tiny_base)).score(prompts * 2, responses, frames * 2)
    torch.testing.assert_close(scores, again)
    assert np.isfinite(scores.numpy()).all()


def test_pair_from_json_reads_optional_segment():
    rows = [{"id": 1, "video": "v.mp4", "prompt": "q", "chosen": "a", "rejected": "b", "start": 0.5},
            {"id": "x", "video": "w.mp4", "prompt": "q", "chosen": "a", "rejected": "b"}]
    pairs = [pair_from_json(r) for r in rows]
    assert pairs[0] == Pair("1", "v.mp4", "q", "a", "b", 0.5, None)
    assert pairs[1].start is None and pairs[1].end is None
    from videostar.errors import VideostarError

    with pytest.raises(VideostarError, match="rejected"):
        pair_from_json({"id": 1, "video": "v", "prompt": "q", "chosen": "a"})


def test_the_first_reward_step_learns(synthetic_data: Path, tmp_path: Path):
    """One optimizer step moves the fresh adapter off zero: the schedule is SFT's (the first step
    has lr > 0; ``get_cosine_schedule_with_warmup`` gave it lr 0 at any warmup)."""
    from safetensors.torch import load_file

    from videostar.config import RewardModelConfig
    from videostar.model import save_model
    from videostar.tiny import build_random

    save_model(build_random(0), tmp_path / "base", "pretrained", {})
    pairs = colour_preferences(synthetic_data)[:4]
    cfg = RewardModelConfig(lr=1e-3, epochs=1, batch_size=4, checkpoint_steps=0, lora=LORA)
    metrics = train_reward_model(str(tmp_path / "base"), pairs, pairs[:1], tmp_path / "rm", cfg, VIDEO,
                                 progress=False)
    assert metrics["steps"] == 1
    adapter = load_file(str(tmp_path / "rm" / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]  # zero at init
    assert lora_b and all(bool(v.abs().max() > 0) for v in lora_b)
