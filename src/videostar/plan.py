"""How much GPU memory a run's model states take, and on how many GPUs it fits (``videostar plan``).

Model states only: weights, gradients and the optimizer's, per GPU, as this code holds them.
Activations come on top (they grow with frames, batch and sequence; gradient checkpointing cuts
them), so a fit keeps ``reserve`` of each GPU free for them (docs/memory.md).

The accounting is the ZeRO paper's (Rajbhandari et al., 2020) for AdamW with an fp32 master:
a trained parameter costs 16 bytes (the plain path: fp32 weight 4 + fp32 gradient 4 + Adam's
two moments 8; DeepSpeed: bf16 weight 2 + bf16 gradient 2 + fp32 master 4 + moments 8), a
frozen one its storage (bf16: 2, NF4 with double quantization: 0.516). ZeRO-1 shards the
optimizer's 12 (or 8 + master) bytes over the GPUs, ZeRO-2 also the gradients, ZeRO-3 also the
weights, frozen ones included. The plain path (``zero 0``) keeps everything on every GPU.
PPO (LoRA only) holds two bases, the policy's (its reference is the same weights, adapter off)
and the one the reward and value adapters share, plus three adapters and the value head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from videostar.errors import VideostarError

NF4_BYTES = (4 + 32 / 64 + 8 / (64 * 256) * 8) / 8
"""4-bit NF4 with double quantization: 4 bits, an 8-bit absmax per 64 weights, and an fp32
constant per 256 of those (bitsandbytes' block sizes): about 0.516 bytes per weight."""
TRAINED_BYTES = 16
"""A trained parameter with AdamW and an fp32 master (see the module docstring)."""
METHODS = ("full", "lora", "qlora")
STAGES = ("sft", "ppo")


@dataclass(frozen=True)
class Counts:
    """A model's parameters as a run sees them."""

    total: int
    """Every parameter of the model (the adapters not included)."""
    trained: int
    """What the optimizer updates: the unfrozen weights (full), or the adapter (+ projector)."""
    quantizable: int
    """The linear layers' weights that QLoRA stores in 4 bits (``lm_head`` stays bf16)."""


def count(model: torch.nn.Module, method: str, r: int = 64, train_projector: bool = False) -> Counts:
    """The counts of ``model`` (real or on the meta device) for ``method``: what
    :func:`videostar.families.freeze_for_full_finetune` leaves trainable, or the LoRA adapters
    :func:`videostar.model.lora_scope` would add (rank ``r``, language model only)."""
    from videostar.families import freeze_for_full_finetune, lora_target_modules, projector_modules

    total = sum(p.numel() for p in model.parameters())
    linear = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    head = model.get_output_embeddings()
    quantizable = sum(m.weight.numel() for m in linear.values() if m is not head)
    if method == "full":
        flags = {n: p.requires_grad for n, p in model.named_parameters()}
        freeze_for_full_finetune(model)
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
        return Counts(total, trained, quantizable)
    adapters = sum(r * (linear[n].in_features + linear[n].out_features) for n in lora_target_modules(model))
    projector = sum(p.numel() for n in (projector_modules(model) if train_projector else [])
                    for p in model.get_submodule(n).parameters())
    return Counts(total, adapters + projector, quantizable)


def estimate(params: float, method: str, r: int = 64) -> Counts:
    """Counts from a parameter count alone (no config at hand): LoRA's adapters and the linear
    share as in Qwen2.5-VL-7B's config (rank 64: 161.5 M adapter weights of 8.29 B; 7.19 B
    in linear layers), a full fine-tune training everything."""
    total = int(params)
    trained = total if method == "full" else int(total * 0.01948 * r / 64)
    return Counts(total, trained, int(total * 0.867))


def model_states(counts: Counts, method: str, stage: str = "sft", zero: int = 0, gpus: int = 1,
                 weight_bytes: int = 2) -> dict[str, float]:
    """Bytes per GPU of the weights, gradients and optimizer (fp32 master included)."""
    if method not in METHODS or stage not in STAGES or zero not in (0, 1, 2, 3) or gpus < 1:
        raise VideostarError(f"plan: method {method!r}, stage {stage!r}, zero {zero}, gpus {gpus}: "
                             f"expected one of {METHODS}, {STAGES}, ZeRO 0-3, gpus >= 1")
    if stage == "ppo" and (method == "full" or zero):
        raise VideostarError("plan: PPO trains LoRA adapters in one process (rlaif.ppo): "
                             "method lora or qlora, zero 0")
    frozen = counts.total - (counts.trained if method == "full" else 0)
    quantized = min(counts.quantizable, frozen) if method == "qlora" else 0
    base = quantized * NF4_BYTES + (frozen - quantized) * weight_bytes
    trained = counts.trained
    if stage == "ppo":  # policy base + the reward/value base; policy and value adapters trained,
        base *= 2       # the reward adapter frozen (fp32, as PEFT keeps adapters)
        frozen_adapter = counts.trained * 4
        trained = 2 * counts.trained
    else:
        frozen_adapter = 0
    if zero == 0:  # the plain path: trainable weights upcast to an fp32 master, fp32 gradients
        weights, grads, optimizer = trained * 4, trained * 4, trained * 8
    else:
        weights, grads, optimizer = trained * weight_bytes, trained * weight_bytes, trained * 12
        optimizer /= gpus
        grads /= gpus if zero >= 2 else 1
        if zero == 3:
            weights, base = weights / gpus, base / gpus
    return {"weights": base + weights + frozen_adapter, "gradients": grads, "optimizer": optimizer}


def gpus_needed(counts: Counts, method: str, stage: str, zero: int, gpu_gib: float,
                reserve: float = 0.2, weight_bytes: int = 2, most: int = 1024) -> int | None:
    """The fewest GPUs (a power of 2, up to ``most``) whose memory less ``reserve`` of it holds
    the model states; None when no count does (the plain path's states do not shrink)."""
    budget = gpu_gib * 2**30 * (1 - reserve)
    n = 1
    while n <= most:
        if sum(model_states(counts, method, stage, zero, n, weight_bytes).values()) <= budget:
            return n
        n *= 2
    return None


def plan_rows(counts: dict[str, Counts], gpus: int, gpu_gib: float, reserve: float = 0.2,
              weight_bytes: int = 2) -> list[dict[str, Any]]:
    """One row per stage, method (``counts`` is keyed by it) and ZeRO stage this code runs:
    bytes per parameter and GiB per GPU on ``gpus`` GPUs, and the GPUs it needs."""
    rows = []
    for stage in STAGES:
        for method in METHODS:
            for zero in (0, 1, 2, 3):
                if stage == "ppo" and (method == "full" or zero):
                    continue
                if zero and method == "qlora":  # DeepSpeed does not shard 4-bit weights
                    continue
                c = counts[method]
                states = sum(model_states(c, method, stage, zero, gpus, weight_bytes).values())
                need = gpus_needed(c, method, stage, zero, gpu_gib, reserve, weight_bytes)
                rows.append({"stage": stage, "method": method, "zero": zero or "plain",
                             "bytes/param": round(states / c.total, 2),
                             f"GiB/GPU on {gpus}": round(states / 2**30, 1),
                             f"GPUs ({gpu_gib:g} GiB)": need if need is not None else "never"})
    return rows


def meta_model(path: str) -> torch.nn.Module:
    """A model folder's architecture on the meta device: every shape, no memory, no weights."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    from videostar.store import resolve

    try:
        config = AutoConfig.from_pretrained(resolve(path))
    except Exception as exc:  # a missing file, bad JSON, a config its class rejects: one line
        raise VideostarError(f"{path}: no readable model config ({str(exc).splitlines()[0][:160]})") from exc
    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(config)
