from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import gradient_video

from videostar.config import LoraConfig
from videostar.errors import VideostarError
from videostar.model import add_lora, load_model, read_card, save_model
from videostar.tiny import build_random


@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rand") / "model"
    save_model(build_random(0), out, "pretrained", {})
    return out


def _videos(n: int) -> list[np.ndarray]:
    return [gradient_video(8, 64) for _ in range(n)]


def test_checkpoint_loads_through_auto_classes(random_ckpt: Path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    assert type(AutoProcessor.from_pretrained(random_ckpt)).__name__ == "Qwen2_5_VLProcessor"
    model = AutoModelForImageTextToText.from_pretrained(random_ckpt)
    assert 100_000 < sum(p.numel() for p in model.parameters()) < 1_000_000
    lm = load_model(str(random_ckpt))
    assert lm.tuned_from == str(random_ckpt) and read_card(random_ckpt)["kind"] == "pretrained"


def test_eight_frames_give_sixteen_video_tokens(random_ckpt: Path):
    lm = load_model(str(random_ckpt))
    enc = lm.encode_prompts(["What is shown?"], _videos(1))
    video_id = lm.model.config.video_token_id
    assert int((enc["input_ids"] == video_id).sum()) == 16


def test_training_labels_cover_answer_tokens_only(random_ckpt: Path):
    lm = load_model(str(random_ckpt))
    answers = ["a red circle", "a much longer answer about a blue square"]
    batch = lm.encode_training(["What?", "What is in the video?"], answers, _videos(2))
    eos = lm.tokenizer.eos_token
    for i, answer in enumerate(answers):
        labelled = batch["labels"][i][batch["labels"][i] != -100]
        assert lm.tokenizer.decode(labelled) == answer + eos
        # every labelled position is attended, padding is not
        assert bool((batch["attention_mask"][i][batch["labels"][i] != -100] == 1).all())
    assert batch["input_ids"].shape == batch["labels"].shape
    loss = lm.model(**batch).loss
    assert torch.isfinite(loss)


def test_left_padded_batch_matches_single_generation(random_ckpt: Path):
    lm = load_model(str(random_ckpt))
    prompts = ["What?", "What is happening in this video? Explain step by step."]
    videos = [gradient_video(8, 64), np.flip(gradient_video(8, 64), axis=0).copy()]
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": lm.pad_token_id}
    enc = lm.encode_prompts(prompts, videos)
    both = lm.model.generate(**enc, **kwargs)[:, enc["input_ids"].shape[1]:]
    for i in range(2):
        one = lm.encode_prompts([prompts[i]], [videos[i]])
        single = lm.model.generate(**one, **kwargs)[:, one["input_ids"].shape[1]:]
        assert both[i].tolist() == single[0].tolist()


def test_lora_adapter_roundtrip(random_ckpt: Path, tmp_path: Path):
    lm = add_lora(load_model(str(random_ckpt)), LoraConfig(r=4, alpha=8, targets=["q_proj"]))
    trainable = sum(p.numel() for p in lm.model.parameters() if p.requires_grad)
    assert 0 < trainable < 5_000
    with torch.no_grad():
        for name, p in lm.model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    enc = lm.encode_prompts(["What?"], _videos(1))
    expected = lm.model.eval()(**enc).logits
    save_model(lm, tmp_path / "adapter", "lora", {})
    card = read_card(tmp_path / "adapter")
    assert card == {"kind": "lora", "base": str(random_ckpt)}
    merged = load_model(str(tmp_path / "adapter"))
    assert merged.tuned_from == str(random_ckpt)
    assert torch.allclose(merged.model(**enc).logits, expected, atol=1e-4)
    with pytest.raises(VideostarError, match="refusing to overwrite"):
        save_model(lm, tmp_path / "adapter", "lora", {})


def test_missing_model_folder_is_one_clear_error(tmp_path: Path):
    with pytest.raises(VideostarError, match="model folder not found"):
        load_model(str(tmp_path / "nope"))


def test_4bit_needs_a_gpu(tiny_base):
    from videostar.errors import VideostarError
    from videostar.model import load_model

    with pytest.raises(VideostarError, match="only '4bit', and only on a CUDA GPU"):
        load_model(str(tiny_base), device="cpu", quantize="4bit")


def test_sampling_never_says_a_media_placeholder_or_role_marker(tiny_base: Path):
    """A sampled ``<|video_pad|>`` in a response breaks every later pass over prompt + response
    (the processor counts one video token more than the video has features): at a temperature
    that makes every token likely, no special token but EOS is ever sampled."""
    lm = load_model(str(tiny_base))
    config = lm.generation_config(50.0, 24)
    specials = {i for i, tok in lm.tokenizer.added_tokens_decoder.items() if tok.special}
    assert lm.model.config.video_token_id in config.suppress_tokens
    assert not set(config.suppress_tokens) & set(lm.eos_token_ids)
    torch.manual_seed(0)
    inputs = lm.encode_prompts(["What is happening in this video?"] * 8, [gradient_video()] * 8)
    out = lm.model.generate(**inputs, generation_config=config)[:, inputs["input_ids"].shape[1]:]
    said = set(out.flatten().tolist())
    assert len(said) > 20  # the temperature spreads the samples over the vocabulary
    assert said & specials <= set(lm.eos_token_ids) | {lm.pad_token_id}  # pad: after EOS only
