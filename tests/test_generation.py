"""The generation interface: HF ``generate`` (the default) and vLLM's request building and
answer parsing, which need no vLLM (it is not installed here; a GPU machine runs the engine)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from videostar.config import GenerateConfig, config_from_dict
from videostar.errors import ConfigError, VideostarError

VLLM_INSTALLED = importlib.util.find_spec("vllm") is not None


def _frames(fps: float = 30.0, indices: tuple[int, ...] = (0, 4, 8, 12, 16, 20, 24, 28), span: int = 32):
    from videostar.video import Frames

    pixels = np.arange(len(indices), dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8)
    return Frames(pixels, fps, list(indices), span)


# a fresh interpreter imports the stack: `make test`, not the fast tier
def test_the_module_imports_and_builds_requests_without_vllm():
    """No vLLM at import: the request builder is importable where vLLM is not installed."""
    code = ("import sys, videostar.generation as g; assert 'vllm' not in sys.modules; "
            "print(g.video_request('p', g.np.zeros((2, 4, 4, 3), 'uint8'))['mm_processor_kwargs'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'do_sample_frames': False" in out


@pytest.mark.fast
def test_video_request_carries_the_clips_timing():
    """fps and frame indices go with the frames, so Qwen-VL's timestamps are the clip's seconds:
    8 frames sampled every 4th of a 32-frame, 30 fps clip are 7.5 frames per second."""
    from videostar.generation import video_request

    frames = _frames()
    request = video_request("<prompt>", frames, {"cap_pixels_per_frame": True})
    assert request["prompt"] == "<prompt>"
    ((pixels, meta),) = request["multi_modal_data"]["video"]
    assert np.array_equal(pixels, frames) and pixels.dtype == np.uint8
    assert meta == {"fps": 30.0, "frames_indices": [0, 4, 8, 12, 16, 20, 24, 28], "total_num_frames": 32,
                    "duration": pytest.approx(32 / 30), "do_sample_frames": False}
    assert [i / meta["fps"] for i in meta["frames_indices"]] == frames.times
    assert request["mm_processor_kwargs"] == {"cap_pixels_per_frame": True, "fps": 7.5,
                                              "do_sample_frames": False}
    slow = video_request("p", _frames(fps=10.0, indices=(0, 10, 20, 30), span=40))
    assert slow["mm_processor_kwargs"]["fps"] == 1.0  # 4 frames over 4 s


@pytest.mark.fast
def test_sampling_settings_are_ours_with_the_rows_seed():
    from videostar.generation import sampling_settings

    cfg = GenerateConfig(temperature=0.7, max_new_tokens=64)
    first, second = sampling_settings(cfg, 11, [5, 2]), sampling_settings(cfg, 12, [5, 2])
    assert first | {"seed": 12} == second
    assert first == {"n": 1, "temperature": 0.7, "top_p": 1.0, "top_k": 0, "min_p": 0.0,
                     "repetition_penalty": 1.0, "max_tokens": 64, "seed": 11, "stop_token_ids": [5, 2],
                     "skip_special_tokens": True}


def _output(request_id: str, *texts: str) -> SimpleNamespace:
    """The fields of vLLM's ``RequestOutput`` that parsing reads."""
    return SimpleNamespace(request_id=request_id,
                           outputs=[SimpleNamespace(text=t, finish_reason="stop") for t in texts])


@pytest.mark.fast
def test_answers_are_parsed_in_request_order_and_gaps_are_errors():
    from videostar.generation import parse_outputs

    assert parse_outputs([_output("0", " a red circle\n"), _output("1", "a blue square")], 2) == [
        "a red circle", "a blue square"]
    with pytest.raises(VideostarError, match="vLLM returned 1 outputs for 2 requests"):
        parse_outputs([_output("0", "x")], 2)
    with pytest.raises(VideostarError, match="vLLM request 7: no completion"):
        parse_outputs([_output("7")], 1)


@pytest.mark.fast
def test_backend_is_checked_in_config():
    assert config_from_dict({"generate": {"backend": "vllm"}}).generate.backend == "vllm"
    assert config_from_dict({}).generate.backend == "hf"
    with pytest.raises(ConfigError, match=r"generate\.backend: invalid value"):
        config_from_dict({"generate": {"backend": "tgi"}})


@pytest.mark.fast
@pytest.mark.skipif(VLLM_INSTALLED, reason="vLLM is installed here")
def test_vllm_backend_without_vllm_is_one_line(tmp_path: Path):
    from videostar.generation import load_generator

    with pytest.raises(VideostarError) as err:
        load_generator(str(tmp_path), GenerateConfig(backend="vllm"))
    assert str(err.value) == ("generate.backend vllm: vLLM is not installed (run it in the "
                              "images/vllm.Dockerfile image on a CUDA machine; see docs/generation.md)")


def test_vllm_prompts_match_the_hf_path(tiny_base: Path, tmp_path: Path):
    """The vLLM requests of a checkpoint hold the HF path's chat prompt, and the sampled frame
    rate they pass gives the same Qwen2.5-VL ``second_per_grid_ts`` as the HF processor; a LoRA
    adapter is served on the base its card names."""
    from videostar.config import LoraConfig
    from videostar.generation import VllmGenerator
    from videostar.model import add_lora, load_model, save_model

    lm = load_model(str(tiny_base))
    frames = _frames(indices=(0, 3, 6, 9, 12, 15, 18, 21), span=24)
    generator = VllmGenerator(str(tiny_base), GenerateConfig())
    (request,) = generator.requests(["What is shown?"], [frames])
    assert request["prompt"] == lm.chat_prompt("What is shown?")
    assert request["prompt"].count("<|video_pad|>") == 1
    hf = lm._process([request["prompt"]], [frames])
    patch = lm.processor.video_processor.temporal_patch_size
    assert hf["second_per_grid_ts"][0] == pytest.approx(patch / request["mm_processor_kwargs"]["fps"])
    assert generator.stop_token_ids == lm.eos_token_ids  # answers end where the HF path ends them
    settings = generator.engine_settings()
    assert settings["model"] == str(tiny_base) and settings["generation_config"] == "vllm"
    assert "enable_lora" not in settings

    adapter = save_model(add_lora(lm, LoraConfig(r=4)), tmp_path / "adapter", "lora", {})
    on_adapter = VllmGenerator(str(adapter), GenerateConfig())
    assert (on_adapter.base, on_adapter.adapter) == (tiny_base, adapter)
    assert on_adapter.engine_settings()["enable_lora"] is True
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4


def test_hf_generator_is_the_default_path(tiny_base: Path, synthetic_data: Path, tmp_path: Path):
    """A loaded model and its HF generator write the same answers; metrics name the backend."""
    from videostar.config import VideoConfig
    from videostar.data.records import read_records
    from videostar.generation import HFGenerator, generate_answers, load_generator
    from videostar.prompts import answer_prompt

    cfg, video = GenerateConfig(max_new_tokens=6, batch_size=2, temperature=0.7), VideoConfig(num_frames=4)
    records = read_records(synthetic_data, [])[:3]
    generator = load_generator(str(tiny_base), cfg)
    assert isinstance(generator, HFGenerator)
    prompt = answer_prompt(cfg.instruction)
    by_generator = generate_answers(generator, records, tmp_path / "a.jsonl", cfg, video, prompt,
                                    progress=False)
    by_model = generate_answers(generator.lm, records, tmp_path / "b.jsonl", cfg, video, prompt,
                                progress=False)
    assert by_generator["backend"] == by_model["backend"] == "hf"
    assert by_generator["generation_config"]["temperature"] == 0.7
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
