"""Correctness of generation, SFT and PPO on the tiny model (issue 19): each test pins one
defect that silently weakens the method on real checkpoints."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import gradient_video

from videostar.config import GenerateConfig, LoraConfig, PPOConfig, SFTConfig, VideoConfig
from videostar.model import LoadedModel, add_lora, load_model, save_model
from videostar.tiny import build_random
from videostar.video import read_frames, write_video


@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rand") / "model"
    save_model(build_random(0), out, "pretrained", {})
    return out


@pytest.fixture(scope="module")
def four_seconds(tmp_path_factory) -> Path:
    """A 4 s video at 8 fps (32 frames)."""
    return write_video(tmp_path_factory.mktemp("v") / "clip.mp4", gradient_video(32, 64), fps=8.0)


def _temporal_positions(lm: LoadedModel, frames: np.ndarray) -> tuple[float, list[int]]:
    """(second_per_grid_ts, the temporal position id of each temporal grid) for one video."""
    enc = lm.encode_prompts(["What happens?"], [frames])
    pos, _ = lm.model.model.get_rope_index(
        enc["input_ids"], enc["mm_token_type_ids"], video_grid_thw=enc["video_grid_thw"],
        second_per_grid_ts=enc["second_per_grid_ts"], attention_mask=enc["attention_mask"])
    video = enc["input_ids"][0] == lm.model.config.video_token_id
    return float(enc["second_per_grid_ts"][0]), sorted(set(pos[0, 0][video].tolist()))


@pytest.mark.parametrize(("kwargs", "seconds_per_grid"), [
    ({"num_frames": 8}, 1.0),                           # 8 frames over 4 s: 2 fps, 2 frames a grid
    ({"num_frames": 8, "start": 1.0, "end": 3.0}, 0.5),  # 8 frames over a 2 s segment: 4 fps
    ({"fps": 1.0}, 2.0),                                # 4 frames at 1 fps
])
def test_temporal_positions_follow_the_frames_real_times(four_seconds, kwargs, seconds_per_grid):
    lm = build_random(0)
    frames = read_frames(four_seconds, **kwargs)
    per_grid, positions = _temporal_positions(lm, frames)
    assert per_grid == pytest.approx(seconds_per_grid, rel=0.05)
    # tokens_per_second=2 as in Qwen2.5-VL-7B: each grid is per_grid * 2 positions after the last
    step = round(per_grid * 2)
    assert np.diff(positions).tolist() == [step] * (len(positions) - 1) and step >= 1


def _stubborn(lm: LoadedModel) -> LoadedModel:
    """The real checkpoint's quirks: Qwen2.5-VL-7B-Instruct ships top_k=1; others a penalty."""
    lm.model.generation_config.top_k = 1
    lm.model.generation_config.repetition_penalty = 1.3
    return lm


def test_sampling_follows_our_config_not_the_checkpoints():
    from videostar.generation import generate_batch

    lm = _stubborn(build_random(0))
    frames = [gradient_video(8, 56)] * 6
    cfg = GenerateConfig(temperature=1.0, max_new_tokens=12)
    texts = generate_batch(lm, ["What is shown?"] * 6, frames, cfg, seed=0)
    assert len(set(texts)) > 1  # top_k=1 would make all six the same greedy answer
    greedy = generate_batch(lm, ["What is shown?"] * 2, frames[:2], GenerateConfig(
        temperature=0.0, max_new_tokens=12), seed=0)
    assert greedy[0] == greedy[1]
    config = lm.generation_config(1.0, 12)
    assert config.top_k == 0 and config.repetition_penalty == 1.0 and config.do_sample


def test_rlaif_samples_differ_on_a_top_k_1_checkpoint(synthetic_data: Path):
    from videostar.config import VerifyConfig
    from videostar.data.records import read_records
    from videostar.rlaif.preferences import build_preferences, label_judge

    lm = _stubborn(build_random(0))
    records = [r for r in read_records(synthetic_data) if r.task == "action_recognition"][:3]
    _, counts = build_preferences(lm, records, GenerateConfig(temperature=1.0, max_new_tokens=12),
                                  judge=label_judge(VerifyConfig()), num_clips=1)
    assert counts["prompts"] == 3 and counts["identical"] == 0


def _trainer(lm: LoadedModel, lora: LoraConfig, **cfg) -> object:
    from videostar.rlaif.ppo import PPOTrainer
    from videostar.rlaif.reward_model import RewardModel

    torch.manual_seed(0)
    critic = RewardModel(add_lora(build_random(0), lora))
    policy = add_lora(lm, lora)
    for name, p in policy.model.named_parameters():  # a non-zero adapter, as after SFT
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    return PPOTrainer(policy, lambda prompts, responses, frames: torch.rand(len(prompts)), critic,
                      PPOConfig(**{"max_new_tokens": 10, "minibatch_size": 2, **cfg}))


def test_ppo_logprobs_are_the_sampled_distributions_at_temperature_1_5():
    from videostar.rlaif.ppo_math import logprobs_from_logits

    trainer = _trainer(build_random(0), LoraConfig(r=4, dropout=0.0), temperature=1.5)
    prompts, frames = ["What is shown?"] * 2, [gradient_video(8, 56)] * 2
    inputs = trainer.lm.encode_prompts(prompts, frames)
    torch.manual_seed(0)
    with torch.no_grad():
        out = trainer.lm.model.generate(**inputs, do_sample=True, temperature=1.5, top_k=0,
                                        top_p=1.0, max_new_tokens=10, output_scores=True,
                                        return_dict_in_generate=True)
        tokens = out.sequences[:, inputs["input_ids"].shape[1]:]
        sampled = torch.stack(out.scores, dim=1).log_softmax(-1).gather(-1, tokens[..., None])[..., 0]
        mask, _ = trainer._response_mask(tokens)
        joined, n_prompt = trainer._joined(prompts, frames, tokens, mask)
        ours = logprobs_from_logits(trainer._logits(joined, n_prompt, tokens.shape[1]), tokens)
    gap = float((ours[mask] - sampled[mask]).abs().max())
    assert gap < 1e-4, f"rollout logprobs are {gap:.3f} nats off the sampled distribution"


def test_an_lr_0_ppo_step_with_lora_dropout_does_not_move_the_ratio():
    trainer = _trainer(build_random(0), LoraConfig(r=4, dropout=0.05), lr=0.0, ppo_epochs=1)
    torch.manual_seed(1)
    record = trainer.step(["What is shown?"] * 4, [gradient_video(8, 56)] * 4)
    assert record["clipfrac"] == 0.0


def _examples(synthetic_data: Path, n: int):
    from videostar.data.records import read_rows
    from videostar.star.sft import examples_from_rows

    rows = [r | {"answer": r["meta"]["reference"]} for r in read_rows(synthetic_data)[:n]]
    return examples_from_rows(rows, "Explain step by step.")


def _full_ft(lm: LoadedModel, examples, **cfg):
    from videostar.star.sft import train

    sft = SFTConfig(**{"lr": 1e-3, "epochs": 1.0, "warmup_ratio": 0.0, "seed": 0,
                       "lora": LoraConfig(enabled=False), **cfg})
    return train(lm, examples, sft, VideoConfig(num_frames=8), progress=False)


def test_accumulation_gives_the_loss_of_the_whole_batch(synthetic_data: Path):
    examples = _examples(synthetic_data, 5)  # a full window of 4, then a partial one of 1
    runs = {}
    for batch, accum in ((4, 1), (2, 2), (1, 4)):
        lm = build_random(0)
        metrics = _full_ft(lm, examples, batch_size=batch, grad_accum=accum, curriculum=True)
        runs[batch, accum] = (metrics["loss_history"], lm.model.lm_head.weight.detach().clone())
    (ref_losses, ref_w), *others = runs.values()
    assert len(ref_losses) == 2
    for losses, weight in others:
        assert losses == pytest.approx(ref_losses, rel=1e-3)
        assert torch.allclose(weight, ref_w, atol=1e-5)


def test_the_first_optimizer_step_learns(synthetic_data: Path):
    lm = build_random(0)
    before = lm.model.lm_head.weight.detach().clone()
    _full_ft(lm, _examples(synthetic_data, 4), batch_size=4, warmup_ratio=1.0)  # one step, warmup
    assert not torch.equal(lm.model.lm_head.weight, before)


@pytest.mark.trains
def test_full_fine_tune_of_bf16_weights_moves_them_as_in_fp32(synthetic_data: Path):
    examples = _examples(synthetic_data, 4)
    moved = {}
    for dtype in (torch.float32, torch.bfloat16):
        lm = build_random(0)
        lm.model.to(dtype)
        before = [p.detach().float().clone() for p in lm.model.parameters()]
        _full_ft(lm, examples, lr=2e-5, batch_size=2)
        after = [p.detach().float() for p in lm.model.parameters()]
        changed = sum(int((a != b).sum()) for a, b in zip(after, before, strict=True))
        moved[dtype] = changed / sum(b.numel() for b in before)
    assert moved[torch.bfloat16] > 0.8 * moved[torch.float32]


def test_lora_wraps_the_language_model_only_unless_asked():
    def wrapped(cfg: LoraConfig) -> list[str]:
        model = add_lora(build_random(0), cfg).model
        return [n.removesuffix(".lora_A") for n, _ in model.named_modules() if n.endswith("lora_A")]

    language = wrapped(LoraConfig(r=4))
    assert len(language) == 2 * 7 and not [n for n in language if ".visual." in n]
    assert all(".language_model." in n for n in language)
    assert [n for n in wrapped(LoraConfig(r=4, scope="all")) if ".visual." in n]
    model = add_lora(build_random(0), LoraConfig(r=4, train_projector=True)).model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".visual.merger." in n for n in trainable)
    assert not any(".visual.blocks." in n for n in trainable)


def test_a_bf16_adapter_keeps_its_effect(random_ckpt: Path, tmp_path: Path):
    """The weight change a bf16 model applies is the adapter's: merged into bf16 weights,
    every element of ``BA`` below half a bf16 ulp of ``W`` rounds away."""
    torch.manual_seed(0)
    lm = add_lora(load_model(str(random_ckpt)), LoraConfig(r=4, alpha=4, dropout=0.0))
    for name, p in lm.model.named_parameters():
        if "lora_B" in name:  # a small change, as an adapter after a short SFT is
            torch.nn.init.normal_(p, std=2e-3)
    save_model(lm, tmp_path / "adapter", "lora", {})
    exact = {n.removeprefix("base_model.model."): m.get_delta_weight("default").detach()
             for n, m in lm.model.named_modules() if hasattr(m, "get_delta_weight")}
    base = dict(load_model(str(random_ckpt), device="cpu", dtype=torch.bfloat16)
                .model.named_modules())
    tuned = load_model(str(tmp_path / "adapter"), device="cpu", dtype=torch.bfloat16).model
    modules = {n.removeprefix("base_model.model."): m for n, m in tuned.named_modules()}
    kept = []
    for name, delta in exact.items():
        module = modules[name]
        if hasattr(module, "get_delta_weight"):  # unmerged: base + adapter, as the forward applies
            applied = module.get_delta_weight("default").float()
        else:
            applied = module.weight.float() - base[name].weight.float()
        kept.append(float((applied * delta).sum() / (delta * delta).sum()))
    assert min(kept) > 0.95, kept


def _saved_activation_bytes(lm: LoadedModel, batch: dict) -> tuple[int, float]:
    """Bytes autograd keeps for backward over one forward (activation memory), and the loss."""
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = lm.model(**batch, use_cache=False).loss
    loss.backward()
    return saved, float(loss)


def test_gradient_checkpointing_cuts_activation_memory_and_keeps_the_loss():
    from transformers import Qwen2_5_VLForConditionalGeneration

    from videostar.star.sft import enable_checkpointing

    base = build_random(0)
    config = base.model.config
    config.text_config.num_hidden_layers = 6  # a larger tiny: activations dominate
    config.text_config.layer_types = ["full_attention"] * 6
    config.text_config.intermediate_size = 512
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        lm = LoadedModel(Qwen2_5_VLForConditionalGeneration(config), base.processor, "tiny", "")
        if checkpointing:
            enable_checkpointing(lm)
        lm.model.train()
        batch = lm.encode_training(["What is shown?"] * 2, ["a red circle"] * 2,
                                   [gradient_video(8, 56)] * 2)
        results.append(_saved_activation_bytes(lm, batch))
    (plain, loss), (checkpointed, loss_ckpt) = results
    assert loss_ckpt == pytest.approx(loss, rel=1e-6)
    assert checkpointed < 0.5 * plain


def test_max_length_cuts_answers_with_one_line_each(caplog):
    lm = build_random(0)
    clipped: list[str] = []
    with caplog.at_level(logging.WARNING, logger="videostar.model"):
        batch = lm.encode_training(["What?", "What?"], ["a red circle " * 20, "ok"],
                                   [gradient_video(8, 56)] * 2, max_length=40, names=["a", "b"],
                                   clipped=clipped)
    assert batch["input_ids"].shape[1] == 40
    assert len(clipped) == 1 and clipped[0].startswith("a: ") and "max_length 40" in clipped[0]
    assert [r.message for r in caplog.records] == clipped


def test_max_pixels_caps_each_frame_with_one_line(tmp_path: Path, caplog):
    path = write_video(tmp_path / "big.mp4", gradient_video(8, 128))
    with caplog.at_level(logging.WARNING, logger="videostar.video"):
        frames = read_frames(path, 4, max_pixels=64 * 64)
    assert frames.shape[1] * frames.shape[2] <= 64 * 64 and frames.times is not None
    assert len(caplog.records) == 1 and "video.max_pixels 4096" in caplog.records[0].message


def test_training_ends_answers_with_the_chat_templates_terminator():
    lm = build_random(0)
    lm.tokenizer.eos_token = None  # a tokenizer without EOS still learns to stop
    batch = lm.encode_training(["What?"], ["a red circle"], [gradient_video(8, 56)])
    labels = batch["labels"][0][batch["labels"][0] != -100]
    assert lm.tokenizer.convert_ids_to_tokens(int(labels[-1])) == "<|im_end|>"
    assert lm.tokenizer.convert_tokens_to_ids("<|im_end|>") in lm.eos_token_ids


@pytest.mark.parametrize("answer", [
    "Answer: yellow square. Explain step by step how one arrives at this. I see it.",
    "Answer: yellow square. I see a yellow square moving.",
    "answer:   Yellow  Square -- it moves left.",
    "I see it. Explain step by step how one arrives at this!",
])
def test_hint_echoes_of_any_form_are_rejected_with_a_reason(answer):
    from videostar.prompts import HINT
    from videostar.star.rationalize import hint_echo

    reason = hint_echo(answer, HINT, "yellow square")
    assert reason is not None and reason.startswith("echoes the hint")
    assert hint_echo("I see a yellow square moving to the left.", HINT, "yellow square") is None


@pytest.mark.fast
def test_each_epoch_has_its_own_seeded_order():
    from videostar.star.sft import Example, epoch_batches

    examples = [Example(str(i), "v.mp4", "q", "a" * (i + 1)) for i in range(12)]
    cfg = SFTConfig(batch_size=3)

    def ids(epoch: int, config: SFTConfig = cfg) -> list[str]:
        return [e.id for batch in epoch_batches(examples, config, epoch) for e in batch]

    assert sorted(ids(0)) == sorted(ids(1)) == sorted(e.id for e in examples)
    assert ids(0) != ids(1) != ids(2)  # a new order each epoch...
    assert ids(1) == ids(1)  # ...that a resumed run draws again
    curriculum = SFTConfig(batch_size=3, curriculum=True)
    assert ids(0, curriculum) == ids(1, curriculum) == [str(i) for i in range(12)]


@pytest.mark.fast
def test_a_resume_on_another_world_size_says_so(tmp_path: Path, monkeypatch, capsys):
    from videostar.training.checkpoints import STAMP, Checkpoints

    Checkpoints(tmp_path, {"base": "a"}, 1).claim()
    (tmp_path / "step-1").mkdir()
    monkeypatch.setenv("WORLD_SIZE", "2")  # rank 0 of 2 (no process group: the claim is rank 0's)
    Checkpoints(tmp_path, {"base": "a"}, 1).claim()
    err = capsys.readouterr().err
    assert f"checkpoint: {tmp_path} was written on 1 rank(s), resuming on 2" in err
    assert json.loads((tmp_path / STAMP).read_text()) == {"base": "a", "world_size": 2}
    Checkpoints(tmp_path, {"base": "a"}, 1).claim()  # the same world size: nothing said
    assert capsys.readouterr().err == ""


@pytest.mark.fast
def test_a_checkpoint_is_durable_before_the_older_one_goes(tmp_path: Path, monkeypatch):
    from torch.optim.lr_scheduler import LambdaLR

    from videostar.training.checkpoints import Checkpoints

    layer = torch.nn.Linear(2, 2)
    optim = torch.optim.AdamW(layer.parameters())
    sched = LambdaLR(optim, lambda s: 1.0)
    layer(torch.ones(1, 2)).sum().backward()
    optim.step()
    ckpts = Checkpoints(tmp_path / "ckpt", {"base": "a"}, 1)
    ckpts.claim()
    params = dict(layer.named_parameters())
    ckpts.save(1, params, optim, sched, {"losses": []})
    synced: list[tuple[str, bool]] = []  # (what was flushed, whether step-1 was still there)
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), (tmp_path / "ckpt" / "step-1").exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    final = ckpts.save(2, params, optim, sched, {"losses": []})
    assert all(still for _, still in synced), "step-1 was removed before step-2 was durable"
    files = {str(p.relative_to(final)) for p in final.rglob("*")}
    flushed = {Path(path).relative_to(tmp_path / "ckpt" / ".step-2.tmp").as_posix()
               for path, _ in synced if ".step-2.tmp/" in path}
    assert files and files <= flushed  # every file and folder of it
    assert synced[-1][0] == str(tmp_path / "ckpt")  # and the rename, in the folder
    assert not (tmp_path / "ckpt" / "step-1").exists()


def _state_bytes(model: torch.nn.Module, optim: torch.optim.Optimizer) -> int:
    """Bytes of every tensor a training step holds: weights, gradients, optimizer state."""
    tensors = [*model.parameters(), *(p.grad for p in model.parameters() if p.grad is not None),
               *(v for s in optim.state.values() for v in s.values() if torch.is_tensor(v))]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


@pytest.mark.parametrize("method", ["full", "lora"])
def test_the_memory_plan_matches_what_a_training_step_holds(method: str):
    from videostar import plan
    from videostar.families import freeze_for_full_finetune
    from videostar.training.loop import fp32_master

    lm = build_random(0)
    counts = plan.count(lm.model, method, r=8)
    if method == "full":
        freeze_for_full_finetune(lm.model)
    else:
        lm = add_lora(lm, LoraConfig(r=8, dropout=0.0))
    fp32_master(lm.model)
    params = [p for p in lm.model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in params) == counts.trained  # the adapter (or unfrozen) count, exactly
    optim = torch.optim.AdamW(params)
    batch = lm.encode_training(["What is shown?"], ["a red circle"], [gradient_video(8, 56)])
    lm.model(**batch, use_cache=False).loss.backward()
    optim.step()
    measured = _state_bytes(lm.model, optim)
    predicted = sum(plan.model_states(counts, method, "sft", 0, 1, weight_bytes=4).values())
    assert measured == pytest.approx(predicted, rel=0.05), (measured, predicted)


@pytest.mark.fast
def test_the_memory_plan_of_the_papers_recipe(capsys):
    from videostar import plan
    from videostar.cli import main

    counts = plan.estimate(7e9, "full")
    per_param = {zero: sum(plan.model_states(counts, "full", "sft", zero, 8).values()) / counts.total
                 for zero in (0, 1, 2, 3)}
    assert per_param == pytest.approx({0: 16, 1: 5.5, 2: 3.75, 3: 2})
    assert plan.gpus_needed(counts, "full", "sft", 0, 80) is None  # 112 GB on every GPU, at any count
    assert plan.gpus_needed(counts, "full", "sft", 2, 80) == 2  # 63 GB of the 64 GiB left
    assert main(["plan", "--params", "7e9", "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    assert "never" in out and "3.75" in out
    assert main(["plan", "--params", "7e9", "--model", "x"]) == 1


@pytest.mark.parametrize("fold", [False, True])
def test_a_bf16_base_for_rl_keeps_a_small_sft_update(random_ckpt: Path, tmp_path: Path, fold: bool):
    """The reward, value and PPO models sit on the SFT model with its adapter folded in
    (``load_model(fold=True)``): folded in float32 and cast once, a bf16 base keeps an update of
    a quarter of a bf16 step in expectation; folded in bf16 (W + BA, both bf16) it rounds away."""
    from videostar.model import plain_model

    torch.manual_seed(0)
    lm = add_lora(load_model(str(random_ckpt)), LoraConfig(r=4, alpha=4, dropout=0.0))
    for name, p in lm.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=2e-4)
    save_model(lm, tmp_path / "adapter", "lora", {})
    exact = {n.removeprefix("base_model.model."): m.get_delta_weight("default").detach()
             for n, m in lm.model.named_modules() if hasattr(m, "get_delta_weight")}
    base = dict(load_model(str(random_ckpt), device="cpu", dtype=torch.bfloat16).model.named_modules())
    if fold:
        model = load_model(str(tmp_path / "adapter"), device="cpu", dtype=torch.bfloat16, fold=True).model
    else:  # what a bf16 load gave the RL models before: the unmerged adapter, folded in bf16
        model = plain_model(load_model(str(tmp_path / "adapter"), device="cpu", dtype=torch.bfloat16).model)
    modules = dict(model.named_modules())
    assert all(modules[n].weight.dtype == torch.bfloat16 for n in exact)
    applied = torch.cat([(modules[n].weight.float() - base[n].weight.float()).flatten() for n in exact])
    delta = torch.cat([d.flatten() for d in exact.values()])
    kept = float((applied * delta).sum() / (delta * delta).sum())
    assert (kept > 0.8) if fold else (kept < 0.5), kept
