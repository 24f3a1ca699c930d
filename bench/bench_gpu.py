"""One GPU, one real-size 7B video LMM with random weights: generation, LoRA SFT and full fine-tune.

No download: the family's tiny checkpoint recipe (``videostar.tiny.families``) is scaled up to the
published config of its 7B checkpoint (``REAL_7B``: Qwen/Qwen2.5-VL-7B-Instruct,
llava-hf/LLaVA-NeXT-Video-7B-hf) and instantiated in bf16 directly on the GPU. Throughput does
not depend on the weights' values, so random weights measure what the real model would; the
tokenizer is the tiny one (ids below its 1k vocabulary), which changes nothing but the text.

It measures through the library's own path: ``LoadedModel.encode_prompts`` + ``generate``
(batched, left-padded, 8 frames, ``--new-tokens`` forced by ``min_new_tokens`` so a random
model's early EOS cannot shorten the run), ``encode_training`` + forward/backward/AdamW for
LoRA (``add_lora``, the recipe's r=64) and for a full fine-tune (the family's vision tower frozen
as ``sft`` does; bf16 weights and AdamW states, no fp32 master copy: a throughput probe, not a
recipe). Tokens/s counts every sequence position (text and video tokens; generation: new tokens).

MFU = model FLOPs/s over the GPU's dense bf16 peak (``PEAK_TFLOPS`` by device name, or
``--peak-tflops``). Model FLOPs per training token, from the instantiated config (PaLM, app. B):
``6 N + 12 L d S`` for a full fine-tune and ``4 N + 12 L d S`` for LoRA (frozen weights need
input gradients but no weight gradients), N = language-model matmul parameters (embeddings
excluded, LM head included), L layers, d hidden size, S sequence length; the frozen vision tower
adds ``2 N_vision`` per vision-tower token (forward only). Each phase runs ``--warmup`` untimed
steps, then ``--steps`` timed ones; peak memory is ``torch.cuda.max_memory_allocated`` per phase.

With ``--vllm`` (in the images/vllm.Dockerfile image) the same prompts
and frames are then answered by vLLM through :mod:`videostar.generation`'s request builder (the
random model saved once to a temporary folder, prefix and multimodal caches off so the repeated
rounds are not served from cache), and HF ``generate`` and vLLM are compared in answers per
second, each answer exactly ``--new-tokens`` long.

    python bench/bench_gpu.py                 # Qwen2.5-VL-7B on cuda:0 (about 3-5 min on an H100)
    python bench/bench_gpu.py --vllm          # ... then HF vs vLLM answers/s on the same prompts
    python bench/bench_gpu.py --arch llava_next_video
    python bench/bench_gpu.py --tiny          # the tiny config on CPU: the end-to-end check
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videostar.config import LoraConfig
from videostar.families import freeze_for_full_finetune
from videostar.model import LoadedModel, add_lora
from videostar.tiny import BUILDERS
from videostar.video import Frames

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REAL_7B: dict[str, dict[str, Any]] = {
    "qwen2_5_vl": {  # Qwen/Qwen2.5-VL-7B-Instruct config.json
        "text": {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
                 "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                 "max_position_embeddings": 128000, "initializer_range": 0.02,
                 "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                     "mrope_section": [16, 24, 24]}},
        "vision": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                   "out_hidden_size": 3584, "fullatt_block_indexes": [7, 15, 23, 31],
                   "window_size": 112, "initializer_range": 0.02},
        "video_size": {"shortest_edge": 336 * 336, "longest_edge": 336 * 336},
    },
    "llava_next_video": {  # llava-hf/LLaVA-NeXT-Video-7B-hf config.json (Vicuna-7B + CLIP-L/336)
        "text": {"vocab_size": 32064, "hidden_size": 4096, "intermediate_size": 11008,
                 "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                 "max_position_embeddings": 4096, "initializer_range": 0.02},
        "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                   "num_attention_heads": 16, "image_size": 336, "patch_size": 14,
                   "projection_dim": 768},
        "video_size": {"shortest_edge": 336},
        "crop_size": {"height": 336, "width": 336},
    },
}
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0,
               "L40S": 362.0, "L4": 121.0, "B200": 2250.0}
"""Dense bf16 tensor-core peak (vendor datasheets; H100 = the SXM part), by device name."""
FRAME_SIDE = {"real": 336, "tiny": 32}


def build(arch: str, tiny: bool, device: str) -> LoadedModel:
    """The family's model at real 7B size (or its tiny size) with random weights, on ``device``."""
    from transformers import AutoModelForImageTextToText

    config, processor = BUILDERS[arch]()
    dtype = torch.float32 if tiny else torch.bfloat16
    if not tiny:
        real = REAL_7B[arch]
        config.text_config.update(real["text"])
        config.vision_config.update(real["vision"])
        processor.video_processor.size = real["video_size"]
        if "crop_size" in real:
            processor.video_processor.crop_size = real["crop_size"]
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    return LoadedModel(model.eval(), processor, f"random-{arch}", "")


def matmul_params(model: Any) -> tuple[int, int, int, int]:
    """(language-model matmul parameters incl. LM head, vision-tower parameters, layers, hidden)
    of a plain (not LoRA-wrapped) model."""
    from videostar.families import family_of

    fam = family_of(model)
    language = model.get_submodule(fam.language_model if fam else "model.language_model")
    lm_params = sum(m.weight.numel() for m in language.modules() if isinstance(m, torch.nn.Linear))
    lm_params += model.get_output_embeddings().weight.numel()
    vision = sum(p.numel() for path in (fam.frozen if fam else ())
                 for p in model.get_submodule(path).parameters())
    text = model.config.text_config
    return lm_params, vision, text.num_hidden_layers, text.hidden_size


def vision_tokens(inputs: dict[str, Any], patch: int) -> int:
    """Tokens the vision tower runs on: Qwen's flattened patches, or frames x patches (CLIP)."""
    pixels = inputs.get("pixel_values_videos")
    if pixels is None:
        return 0
    if pixels.dim() == 2:
        return pixels.shape[0]
    frames = pixels.shape[0] * pixels.shape[1]
    return frames * (pixels.shape[-1] // patch) ** 2


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def videos(batch: int, frames: int, side: int, seed: int = 0) -> list[np.ndarray]:
    """Random clips with timing: every 4th frame of a 30 fps clip, as ``read_frames`` gives them."""
    rng = np.random.default_rng(seed)
    return [Frames(rng.integers(0, 256, (frames, side, side, 3), dtype=np.uint8), 30.0,
                   list(range(0, 4 * frames, 4)), 4 * frames) for _ in range(batch)]


def gen_prompts(batch: int) -> list[str]:
    return [f"Question {i}: what happens in this video, step by step?" for i in range(batch)]


def bench_generate(lm: LoadedModel, args: argparse.Namespace, side: int) -> dict[str, Any]:
    prompts, frames = gen_prompts(args.batch), videos(args.batch, args.frames, side)
    reset_peak(args.device)
    for _ in range(args.warmup + 1):  # the last round is timed
        sync(args.device)
        started = time.perf_counter()
        with torch.inference_mode():
            inputs = lm.encode_prompts(prompts, frames)
            out = lm.model.generate(**inputs, max_new_tokens=args.new_tokens,
                                    min_new_tokens=args.new_tokens, do_sample=False,
                                    pad_token_id=lm.pad_token_id)
        sync(args.device)
        seconds = time.perf_counter() - started
    new = (out.shape[1] - inputs["input_ids"].shape[1]) * args.batch
    return {"phase": f"generate (batch {args.batch}, {args.frames} frames, {args.new_tokens} new)",
            "tokens_per_s": new / seconds, "answers_per_s": args.batch / seconds, "mfu": None,
            "peak_gib": peak_gib(args.device), "seconds": seconds,
            "prompt_tokens": int(inputs["input_ids"].shape[1])}


def bench_vllm(model_dir: Path, args: argparse.Namespace, side: int) -> dict[str, Any]:
    """The same prompts and frames through vLLM: the library's requests (chat prompt, frames
    with their timing), greedy, exactly ``--new-tokens`` each (``min_tokens`` + ``ignore_eos``,
    as ``min_new_tokens`` does for HF); request building is timed, as HF's processor is."""
    from vllm import SamplingParams

    from videostar.config import GenerateConfig
    from videostar.generation import VllmGenerator, parse_outputs, sampling_settings

    cfg = GenerateConfig(temperature=0.0, max_new_tokens=args.new_tokens)
    generator = VllmGenerator(str(model_dir), cfg, engine_args={
        "enable_prefix_caching": False, "mm_processor_cache_gb": 0,
        "gpu_memory_utilization": args.vllm_memory})
    prompts, frames = gen_prompts(args.batch), videos(args.batch, args.frames, side)
    params = [SamplingParams(**sampling_settings(cfg, i), min_tokens=args.new_tokens, ignore_eos=True)
              for i in range(args.batch)]
    llm = generator.engine()
    for _ in range(args.warmup + 1):  # the last round is timed
        started = time.perf_counter()
        outputs = llm.generate(generator.requests(prompts, frames), params, use_tqdm=False)
        seconds = time.perf_counter() - started
    answers = parse_outputs(outputs, args.batch)
    new = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"phase": f"generate vLLM (batch {args.batch}, {args.frames} frames, {args.new_tokens} new)",
            "tokens_per_s": new / seconds, "answers_per_s": len(answers) / seconds, "mfu": None,
            "peak_gib": None, "seconds": seconds}


def bench_train(lm: LoadedModel, args: argparse.Namespace, side: int, lora: bool,
                counts: tuple[int, int, int, int], patch: int) -> dict[str, Any]:
    """Forward + backward + AdamW steps on one fixed batch through ``encode_training``."""
    prompts = [f"Describe video {i} in detail." for i in range(args.train_batch)]
    answer = " ".join(["the shape moves slowly to the left and then turns around"] * 24)
    frames = videos(args.train_batch, args.frames, side, seed=1)
    inputs = lm.encode_training(prompts, [answer] * args.train_batch, frames)
    params = [p for p in lm.model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-5)
    lm.model.train()
    reset_peak(args.device)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(args.device)
            started = time.perf_counter()
        loss = lm.model(**inputs).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
    sync(args.device)
    seconds = (time.perf_counter() - started) / args.steps
    lm.model.eval()
    batch, seq = inputs["input_ids"].shape
    n_lm, n_vision, layers, hidden = counts
    per_token = (4 if lora else 6) * n_lm + 12 * layers * hidden * seq
    flops = per_token * batch * seq + 2 * n_vision * vision_tokens(inputs, patch)
    mfu = flops / seconds / (args.peak_tflops * 1e12) if args.peak_tflops else None
    trainable = sum(p.numel() for p in params)
    del optim, params
    return {"phase": f"{'LoRA r=64' if lora else 'full'} SFT (batch {args.train_batch} x {seq} tokens)",
            "tokens_per_s": batch * seq / seconds, "mfu": mfu, "peak_gib": peak_gib(args.device),
            "seconds": seconds, "trainable_params": trainable, "loss": float(loss.detach())}


def table(rows: list[dict[str, Any]]) -> str:
    def fmt(value: Any, spec: str) -> str:
        return format("n/a", spec[0] + spec[1:].split(".")[0]) if value is None else format(value, spec)

    lines = [f"{'phase':58} {'tokens/s':>10} {'MFU':>7} {'peak GiB':>9} {'s/step':>8}"]
    lines += [f"{r['phase']:58} {r['tokens_per_s']:>10.1f} {fmt(r['mfu'], '>7.1%')} "
              f"{fmt(r['peak_gib'], '>9.1f')} {r['seconds']:>8.2f}" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="qwen2_5_vl", choices=sorted(REAL_7B))
    parser.add_argument("--tiny", action="store_true", help="the tiny config on CPU (end-to-end check)")
    parser.add_argument("--device", help="default: cuda, or cpu with --tiny")
    parser.add_argument("--batch", type=int, default=8, help="generation batch")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (default: by name)")
    parser.add_argument("--out", help="also write the rows as JSON here")
    parser.add_argument("--vllm", action="store_true",
                        help="then answer the same prompts with vLLM and compare answers/s (GPU + vLLM)")
    parser.add_argument("--vllm-memory", type=float, default=0.85,
                        help="vLLM's gpu_memory_utilization (the torch model is freed first)")
    args = parser.parse_args()
    if args.vllm and (args.tiny or importlib.util.find_spec("vllm") is None):
        parser.error("--vllm needs vLLM on a CUDA GPU (the images/vllm.Dockerfile image) and the "
                     "real-size model")
    if args.tiny:
        args.device = args.device or "cpu"
        args.new_tokens, args.warmup, args.steps = min(args.new_tokens, 8), 1, 2
    args.device = args.device or "cuda"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device; --tiny runs on CPU")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    if args.peak_tflops is None:
        args.peak_tflops = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    side = FRAME_SIDE["tiny" if args.tiny else "real"]
    torch.manual_seed(0)
    started = time.perf_counter()
    lm = build(args.arch, args.tiny, args.device)
    params = sum(p.numel() for p in lm.model.parameters())
    print(f"{args.arch} ({'tiny' if args.tiny else 'real 7B config'}), {params / 1e6:,.1f} M params, "
          f"random weights, on {name}; built in {time.perf_counter() - started:.0f} s", flush=True)
    counts = matmul_params(lm.model)
    patch = lm.model.config.vision_config.patch_size
    saved = tempfile.TemporaryDirectory(prefix="bench-gpu-") if args.vllm else None
    if saved:  # vLLM loads the very same random weights from disk
        lm.model.save_pretrained(saved.name)
        lm.processor.save_pretrained(saved.name)
    rows = [bench_generate(lm, args, side)]
    lora = add_lora(lm, LoraConfig(r=64, alpha=16, dropout=0.0))
    rows.append(bench_train(lora, args, side, True, counts, patch))
    lm = LoadedModel(lora.model.unload(), lm.processor, lm.source, lm.tuned_from)
    del lora
    lm.model.requires_grad_(True)  # LoRA froze every base weight
    freeze_for_full_finetune(lm.model)
    rows.append(bench_train(lm, args, side, False, counts, patch))
    if saved:
        del lm
        torch.cuda.empty_cache()
        rows.append(bench_vllm(Path(saved.name), args, side))
        saved.cleanup()
    print(table(rows))
    if saved:
        hf, vllm = rows[0]["answers_per_s"], rows[-1]["answers_per_s"]
        print(f"answers/s on the same prompts: HF generate {hf:.2f}, vLLM {vllm:.2f} ({vllm / hf:.1f}x)")
    print(f"total {time.perf_counter() - started:.0f} s; peak bf16 {args.peak_tflops or 'unknown'} TFLOPS")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"arch": args.arch, "tiny": args.tiny, "device": name, "params": params,
                       "peak_tflops": args.peak_tflops, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
