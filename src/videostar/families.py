"""What differs between video LMM families where videostar touches them, in one table.

Everything else (loading, encoding, generation, training) is one code path through
``AutoProcessor`` + ``AutoModelForImageTextToText``. A family is keyed by its config's
``model_type``; a model whose type is not here still runs, with LoRA on every linear layer of
its language model (``get_decoder()``) and nothing frozen in a full fine-tune.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger(__name__)

DECODER_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Attention and MLP projections of a Llama/Qwen2-style decoder."""


@dataclass(frozen=True)
class Family:
    """One row: the real checkpoint it stands for and how our steps must treat it."""

    checkpoint: str
    """The official checkpoint whose architecture, processor and chat template the row matches."""
    video_placeholder: str
    """The token the chat template writes for a video (the processor expands it per frame)."""
    frozen: tuple[str, ...]
    """Modules kept frozen in a full fine-tune: the vision tower(s), as the family's own recipe."""
    language_model: str = "model.language_model"
    """Where the language model lives; LoRA goes only inside it."""
    lora_targets: tuple[str, ...] = DECODER_LINEAR
    """Linear layers of the language model that get LoRA adapters (by leaf name)."""
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra arguments to every processor call for this family."""


QWEN_VIDEO = {"cap_pixels_per_frame": True}
"""Qwen video processors: cap each frame's pixels as the reference qwen-vl-utils does."""

FAMILIES: dict[str, Family] = {
    "qwen2_vl": Family("Qwen/Qwen2-VL-7B-Instruct", "<|video_pad|>", ("model.visual",),
                       processor_kwargs=QWEN_VIDEO),
    "qwen2_5_vl": Family("Qwen/Qwen2.5-VL-7B-Instruct", "<|video_pad|>", ("model.visual",),
                         processor_kwargs=QWEN_VIDEO),
    "qwen3_vl": Family("Qwen/Qwen3-VL-8B-Instruct", "<|video_pad|>", ("model.visual",),
                       processor_kwargs=QWEN_VIDEO),
    "llava_next_video": Family("llava-hf/LLaVA-NeXT-Video-7B-hf", "<video>", ("model.vision_tower",)),
    "video_llava": Family("LanguageBind/Video-LLaVA-7B-hf", "<video>",
                          ("model.video_tower", "model.image_tower")),
    "llava_onevision": Family("llava-hf/llava-onevision-qwen2-7b-ov-hf", "<video>",
                              ("model.vision_tower",)),
    "internvl": Family("OpenGVLab/InternVL3-1B-hf", "<video>", ("model.vision_tower",)),
    "smolvlm": Family("HuggingFaceTB/SmolVLM2-2.2B-Instruct", "<video>", ("model.vision_model",),
                      language_model="model.text_model"),
    "video_llama_3": Family("lkhl/VideoLLaMA3-2B-Image-HF", "<|video_pad|>", ("model.vision_model",)),
}


def family_of(model: Any) -> Family | None:
    """The table row for ``model`` (a transformers model), or None for an unknown family."""
    return FAMILIES.get(getattr(model.config, "model_type", ""))


def processor_kwargs(model: Any) -> dict[str, Any]:
    fam = family_of(model)
    return dict(fam.processor_kwargs) if fam else {}


def lora_target_modules(model: Any, leaf_names: list[str] | None = None) -> list[str]:
    """Full names of the language model's linear layers that get LoRA adapters.

    ``leaf_names`` (the recipe's ``lora.targets``) overrides the family's list; for an unknown
    family with no override every linear layer of ``get_decoder()`` is adapted.
    """
    fam = family_of(model)
    if fam is not None:
        lm_path, names = fam.language_model, leaf_names or list(fam.lora_targets)
        language_model = model.get_submodule(lm_path)
    else:
        decoder = model.get_decoder()
        lm_path = next(n for n, m in model.named_modules() if m is decoder)
        language_model, names = decoder, leaf_names
        log.warning("%s: family not in videostar.families; LoRA on %s of its language model (%s)",
                    model.config.model_type, ", ".join(names) if names else "every linear layer",
                    lm_path)
    return [f"{lm_path}.{name}" for name, module in language_model.named_modules()
            if isinstance(module, torch.nn.Linear)
            and (names is None or name.rsplit(".", 1)[-1] in names)]


def freeze_for_full_finetune(model: Any) -> list[str]:
    """Freeze the family's vision modules before a full fine-tune; returns what was frozen."""
    fam = family_of(model)
    if fam is None:
        log.warning("%s: family not in videostar.families; a full fine-tune trains every weight",
                    model.config.model_type)
        return []
    for path in fam.frozen:
        model.get_submodule(path).requires_grad_(False)
    return list(fam.frozen)
