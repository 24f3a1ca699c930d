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
    projector: tuple[str, ...]
    """The vision-to-language projector: trained in a full fine-tune, even where it lives inside
    a frozen tower (Qwen's ``visual.merger``), and what ``lora.train_projector`` trains. Every
    family's own instruction-tuning recipe trains it with the language model and keeps the
    vision encoder frozen: Video-LLaVA's and LLaVA-NeXT-Video's second stage, the Qwen2/2.5-VL
    fine-tuning scripts (``tune_mm_mlp`` on, ``tune_mm_vision`` off), InternVL's, SmolVLM2's and
    VideoLLaMA3's SFT stages."""
    language_model: str = "model.language_model"
    """Where the language model lives; LoRA goes only inside it."""
    lora_targets: tuple[str, ...] = DECODER_LINEAR
    """Linear layers of the language model that get LoRA adapters (by leaf name)."""
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra arguments to every processor call for this family."""


QWEN_VIDEO = {"cap_pixels_per_frame": True}
"""Qwen video processors: cap each frame's pixels as the reference qwen-vl-utils does."""

LLAVA_PROJECTOR = ("model.multi_modal_projector",)

FAMILIES: dict[str, Family] = {
    "qwen2_vl": Family("Qwen/Qwen2-VL-7B-Instruct", "<|video_pad|>", ("model.visual",),
                       ("model.visual.merger",), processor_kwargs=QWEN_VIDEO),
    "qwen2_5_vl": Family("Qwen/Qwen2.5-VL-7B-Instruct", "<|video_pad|>", ("model.visual",),
                         ("model.visual.merger",), processor_kwargs=QWEN_VIDEO),
    "qwen3_vl": Family("Qwen/Qwen3-VL-8B-Instruct", "<|video_pad|>", ("model.visual",),
                       ("model.visual.merger", "model.visual.deepstack_merger_list"),
                       processor_kwargs=QWEN_VIDEO),
    "llava_next_video": Family("llava-hf/LLaVA-NeXT-Video-7B-hf", "<video>", ("model.vision_tower",),
                               LLAVA_PROJECTOR),
    "video_llava": Family("LanguageBind/Video-LLaVA-7B-hf", "<video>",
                          ("model.video_tower", "model.image_tower"), LLAVA_PROJECTOR),
    "llava_onevision": Family("llava-hf/llava-onevision-qwen2-7b-ov-hf", "<video>",
                              ("model.vision_tower",), LLAVA_PROJECTOR),
    "internvl": Family("OpenGVLab/InternVL3-1B-hf", "<video>", ("model.vision_tower",), LLAVA_PROJECTOR),
    "smolvlm": Family("HuggingFaceTB/SmolVLM2-2.2B-Instruct", "<video>", ("model.vision_model",),
                      ("model.connector",), language_model="model.text_model"),
    "video_llama_3": Family("lkhl/VideoLLaMA3-2B-Image-HF", "<|video_pad|>", ("model.vision_model",),
                            ("model.projector",)),
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


PROJECTOR_PARTS = ("merger", "multi_modal_projector", "mm_projector", "connector", "projector")
"""Projector module names, for a family not in the table."""


def projector_modules(model: Any) -> list[str]:
    """Full names of the vision-to-language projector's modules: the family's (a list of them
    by its items: PEFT wraps modules it calls, not containers), else by name."""
    fam = family_of(model)
    if fam is not None:
        names = []
        for path in fam.projector:
            module = model.get_submodule(path)
            names += ([f"{path}.{i}" for i in range(len(module))]
                      if isinstance(module, torch.nn.ModuleList) else [path])
        return names
    return [name for name, _ in model.named_modules() if name.split(".")[-1] in PROJECTOR_PARTS]


def freeze_for_full_finetune(model: Any) -> list[str]:
    """Freeze the family's vision modules before a full fine-tune, its projector left trainable;
    returns what was frozen."""
    fam = family_of(model)
    if fam is None:
        log.warning("%s: family not in videostar.families; a full fine-tune trains every weight",
                    model.config.model_type)
        return []
    for path in fam.frozen:
        model.get_submodule(path).requires_grad_(False)
    for path in fam.projector:
        model.get_submodule(path).requires_grad_(True)
    return list(fam.frozen)
