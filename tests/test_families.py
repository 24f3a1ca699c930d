"""Every video LMM family through every step, each on its tiny random checkpoint (`-m families`).

One module-scoped checkpoint per family, written by ``videostar model tiny --arch`` and loaded
back through the Auto classes like a download. The README's support matrix is this file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY_CONFIG, colour_preferences

from videostar.cli import main
from videostar.config import GenerateConfig, VideoConfig
from videostar.data.records import read_records, read_rows, write_jsonl
from videostar.data.synthetic import write_kinetics_split
from videostar.families import FAMILIES, family_of, lora_target_modules
from videostar.generation import generate_batch
from videostar.model import MODEL_CARD, load_model, save_model
from videostar.tiny import BUILDERS
from videostar.video import read_frames

pytestmark = [pytest.mark.families, pytest.mark.slow]

ARCHS = list(BUILDERS)
GREEDY = GenerateConfig(max_new_tokens=8, temperature=0.0)
VIDEO = VideoConfig(num_frames=8)


@pytest.fixture(scope="module", params=ARCHS)
def ckpt(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(request.param) / "base"
    assert main(["model", "tiny", "--arch", request.param, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def run_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny recipe, shrunk: short answers, 2 PPO steps, no tracking."""
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg.pop("tracking")
    cfg["generate"] |= {"max_new_tokens": 8, "batch_size": 4}
    cfg["sft"] |= {"epochs": 3, "batch_size": 4}
    cfg["evaluate"]["max_new_tokens"] = 8
    cfg["rlaif"]["reward_model"] |= {"epochs": 2}
    cfg["rlaif"]["ppo"] |= {"steps": 2, "batch_size": 4, "minibatch_size": 4, "max_new_tokens": 8,
                            "save_every": 0}
    path = tmp_path_factory.mktemp("config") / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def records(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight synthetic records of every task."""
    path = tmp_path_factory.mktemp("records") / "records.jsonl"
    write_jsonl(path, read_records(synthetic_data)[:8])
    return path


def _frames(recs: list) -> list:
    return [read_frames(r.video, VIDEO.num_frames, r.start, r.end) for r in recs]


def test_checkpoint_is_the_family_loaded_through_auto_classes(ckpt: Path):
    lm = load_model(str(ckpt), device="cpu")
    fam = family_of(lm.model)
    params = sum(p.numel() for p in lm.model.parameters())
    assert fam is FAMILIES[lm.model.config.model_type] and 100_000 < params < 1_000_000
    assert fam.video_placeholder in lm.chat_prompt("What happens?")
    targets = lora_target_modules(lm.model)
    assert targets and all(t.startswith(fam.language_model + ".") for t in targets)


def test_batched_left_padded_generation_equals_one_at_a_time(ckpt: Path, records: Path):
    lm = load_model(str(ckpt), device="cpu")
    recs = read_records(records)[:3]
    prompts = [r.question + " Answer briefly." * i for i, r in enumerate(recs)]  # three lengths
    frames = _frames(recs)
    batched = generate_batch(lm, prompts, frames, GREEDY, seed=0)
    alone = [generate_batch(lm, [p], [f], GREEDY, seed=0)[0] for p, f in zip(prompts, frames, strict=True)]
    assert batched == alone and any(batched)


def _sft(base: Path, data: Path, config: Path, out: Path, lora: bool) -> dict:
    cfg = yaml.safe_load(config.read_text())
    cfg["sft"]["lora"]["enabled"] = lora
    cfg["sft"]["lr"] = 5e-3 if lora else 3e-3
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["--config", str(path), "sft", "--base-model", str(base), "--data", str(data),
                 "--out", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def lora_sft(ckpt: Path, records: Path, run_config: Path) -> tuple[Path, dict]:
    """LoRA SFT on the references as verified answers (a random model answers nothing right)."""
    correct = ckpt.parent / "correct.jsonl"
    write_jsonl(correct, [r | {"answer": r["meta"]["reference"], "prompt_kind": "answer"}
                          for r in read_rows(records)])
    out = ckpt.parent / "sft-lora"
    return out, _sft(ckpt, correct, run_config, out, lora=True)


@pytest.mark.trains
def test_star_steps_and_both_fine_tunes(ckpt: Path, records: Path, run_config: Path, tmp_path: Path,
                                        lora_sft: tuple[Path, dict]):
    """generate -> verify -> rationalize from the CLI; LoRA and full SFT lower the loss."""
    common = ["--config", str(run_config)]
    assert main([*common, "generate", "--model", str(ckpt), "--data", str(records),
                 "--out", str(tmp_path / "gen")]) == 0
    assert len(read_rows(tmp_path / "gen" / "answers.jsonl")) == 8
    assert main([*common, "verify", "--answers", str(tmp_path / "gen" / "answers.jsonl"),
                 "--out", str(tmp_path / "ver")]) == 0
    verified, rejected = (read_rows(tmp_path / "ver" / f) for f in ("verified.jsonl", "rejected.jsonl"))
    assert len(verified) + len(rejected) == 8
    assert main([*common, "rationalize", "--model", str(ckpt), "--rejected",
                 str(tmp_path / "ver" / "rejected.jsonl"), "--out", str(tmp_path / "rat")]) == 0
    assert json.loads((tmp_path / "rat" / "metrics.json").read_text())["video_errors"] == []
    full_out = tmp_path / "sft-full"
    full = _sft(ckpt, ckpt.parent / "correct.jsonl", run_config, full_out, lora=False)
    for out, metrics in (lora_sft, (full_out, full)):
        assert metrics["train_loss"] < 0.85 * metrics["first_loss"], metrics
        assert json.loads((out / "model" / MODEL_CARD).read_text())["base"] == str(ckpt)
    assert (lora_sft[1]["kind"], full["kind"]) == ("lora", "full")


@pytest.mark.trains
def test_adapter_and_merged_model_round_trip(ckpt: Path, records: Path, tmp_path: Path,
                                             lora_sft: tuple[Path, dict]):
    recs = read_records(records)[:2]
    prompts, frames = [r.question for r in recs], _frames(recs)
    adapter = load_model(str(lora_sft[0] / "model"), device="cpu", merge=False)
    merged = load_model(str(lora_sft[0] / "model"), device="cpu", merge=True)
    base = load_model(str(ckpt), device="cpu")
    answers = generate_batch(adapter, prompts, frames, GREEDY, seed=0)
    assert generate_batch(merged, prompts, frames, GREEDY, seed=0) == answers
    assert generate_batch(base, prompts, frames, GREEDY, seed=0) != answers  # the adapter matters
    save_model(merged, tmp_path / "merged", "full", {})
    again = load_model(str(tmp_path / "merged"), device="cpu")
    assert again.tuned_from == str(ckpt)
    assert generate_batch(again, prompts, frames, GREEDY, seed=0) == answers


def test_reward_model_and_ppo(ckpt: Path, synthetic_data: Path, records: Path, run_config: Path,
                              tmp_path: Path):
    prefs = tmp_path / "prefs"
    pairs = [dataclasses.asdict(p) for p in colour_preferences(synthetic_data)[:8]]
    write_jsonl(prefs / "pairs.jsonl", pairs[:6])
    write_jsonl(prefs / "heldout.jsonl", pairs[6:])
    (prefs / "split.json").write_text(json.dumps({"heldout_videos": [p["video"] for p in pairs[6:]]}))
    common = ["--config", str(run_config)]
    assert main([*common, "reward-model", "--model", str(ckpt), "--preferences", str(prefs),
                 "--out", str(tmp_path / "rm")]) == 0
    assert json.loads((tmp_path / "rm" / "metrics.json").read_text())["steps"] > 0
    assert main([*common, "ppo", "--model", str(ckpt), "--reward-model", str(tmp_path / "rm" / "model"),
                 "--records", str(records), "--preferences", str(prefs),
                 "--out", str(tmp_path / "ppo")]) == 0
    result = json.loads((tmp_path / "ppo" / "metrics.json").read_text())
    assert result["steps"] == 2 and [h["step"] for h in result["history"]] == [1, 2]
    assert json.loads((tmp_path / "ppo" / "model" / MODEL_CARD).read_text())["kind"] == "lora"


def test_kinetics_evaluation(ckpt: Path, tmp_path: Path):
    csv_path = write_kinetics_split(tmp_path / "k700", 4, seed=1)
    assert main(["eval", "kinetics700", "--model", str(ckpt), "--csv", str(csv_path), "--videos",
                 str(csv_path.parent / "videos"), "--split", "validate",
                 "--out", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["counts"]["items"] == report["counts"]["answered"] == 4
    assert report["summary"]["accuracy"] is not None


@pytest.mark.slow
@pytest.mark.trains
@pytest.mark.parametrize("arch", ["llava_next_video", "internvl"])
def test_one_cycle_of_the_local_pipeline(arch: str, synthetic_data: Path, tmp_path: Path):
    """A non-Qwen family, pretrained briefly like the demo base, through kfp.local: one cycle."""
    from videostar.pipelines.local import collect

    base = tmp_path / "base"
    # 250 steps: the base answers 4-8 of the 24 right (base seeds 0-2); 150 steps: 2-7
    assert main(["model", "tiny", "--arch", arch, "--pretrain-steps", "250", "--out", str(base)]) == 0
    data = tmp_path / "records.jsonl"
    write_jsonl(data, read_records(synthetic_data)[:24])
    heldout = write_kinetics_split(tmp_path / "heldout", 4, seed=1)
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg.pop("tracking")
    cfg["pipeline"] |= {"base_model": str(base), "dataset": str(data), "num_shards": 1}
    cfg["decide"]["max_cycles"] = 1
    cfg["rlaif"]["enabled"] = False
    validation = write_kinetics_split(tmp_path / "validation", 4, seed=2)
    for suite, csv in zip(cfg["evaluate"]["suites"], (heldout, validation), strict=True):
        suite["data"] = {"csv": str(csv), "videos": str(csv.parent / "videos")}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["--config", str(config), "run", "--local", "--root", str(tmp_path / "runs")]) == 0
    (run_dir,) = (p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    run = collect(run_dir)
    assert [c["cycle"] for c in run.cycles] == [0] and run.cycles[0]["answer_yield"] > 0
    (model,) = run.models
    card = json.loads((model / MODEL_CARD).read_text())
    assert card["kind"] == "lora" and Path(card["base"]).name == base.name
    assert "eval.kinetics700.accuracy" in run.cycles[0]


def test_unknown_family_falls_back_to_every_linear_layer_of_its_language_model(caplog):
    """An image LLaVA (type ``llava``, not in the table): LoRA on all decoder linears, one line."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    from videostar.families import freeze_for_full_finetune

    model = LlavaForConditionalGeneration(LlavaConfig(
        text_config={"model_type": "llama", "vocab_size": 64, "hidden_size": 32,
                     "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 28, "patch_size": 14},
        image_token_index=63))
    targets = lora_target_modules(model)
    assert family_of(model) is None and len(targets) == 7  # q k v o gate up down of one layer
    assert all(t.startswith("model.language_model.layers.0.") for t in targets)
    assert [r.message for r in caplog.records if "not in videostar.families" in r.message] == [
        "llava: family not in videostar.families; LoRA on every linear layer of its language model "
        "(model.language_model)"]
    assert freeze_for_full_finetune(model) == []


@pytest.mark.parametrize("arch", ARCHS)
def test_full_fine_tune_trains_the_projector_and_freezes_the_vision_encoder(arch: str):
    """Every family's recipe (the table's ``projector``): Qwen's ``visual.merger`` trains even
    though the rest of ``visual`` is frozen."""
    from videostar.families import freeze_for_full_finetune, projector_modules
    from videostar.tiny import build_arch

    model = build_arch(arch).model
    frozen = freeze_for_full_finetune(model)
    fam = FAMILIES[arch]
    projector = projector_modules(model)
    assert projector and all(p.startswith(fam.projector) for p in projector)
    for path in projector:
        assert all(p.requires_grad for p in model.get_submodule(path).parameters())
    encoder = [n for n, p in model.named_parameters()
               if n.startswith(tuple(frozen)) and not n.startswith(fam.projector)]
    assert encoder and not any(p.requires_grad for n, p in model.named_parameters() if n in encoder)
    assert any(p.requires_grad for n, p in model.named_parameters() if n.startswith(fam.language_model))
