"""Load any transformers video LMM (processor + model) and encode prompts and training pairs.

The same code path loads the tiny test checkpoint and a real 7B model (Qwen2.5-VL,
LLaVA-NeXT-Video, Video-LLaVA): ``AutoProcessor`` + ``AutoModelForImageTextToText`` from a
local folder or an object-store URI, frames from decord through ``videos=``. A folder written
by SFT holds a LoRA adapter (or full weights) plus the processor, and records its base.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videostar.config import LoraConfig
from videostar.errors import VideostarError

MODEL_CARD = "videostar_model.json"
"""Written next to every checkpoint videostar saves: its kind and the base it was tuned from."""


@dataclass
class LoadedModel:
    """A model with its processor, and the helpers that turn text + frames into model inputs."""

    model: Any
    processor: Any
    source: str
    tuned_from: str
    """What the weights were tuned from (the model card's ``base``); the model itself when pretrained."""

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def chat_prompt(self, text: str) -> str:
        """A user turn with one video and ``text``, ending where the assistant's answer starts."""
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    def encode_prompts(self, prompts: list[str], videos: list[np.ndarray]) -> dict[str, Any]:
        """A left-padded batch for generation, so every answer starts at the same position."""
        self.tokenizer.padding_side = "left"
        enc = self.processor(
            text=[self.chat_prompt(p) for p in prompts], videos=list(videos),
            padding=True, return_tensors="pt",
        )
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in enc.items()}

    def encode_training(
        self, prompts: list[str], answers: list[str], videos: list[np.ndarray]
    ) -> dict[str, Any]:
        """A right-padded batch with ``labels`` on the answer tokens only (-100 elsewhere).

        Each prompt goes through the processor alone (which expands the video placeholder) and
        the answer is tokenized without it, so the prompt/answer boundary is exact for any
        tokenizer. Per-sample vision tensors are concatenated along dim 0, which matches both
        the flattened-patch (Qwen) and the batch-first (LLaVA) conventions.
        """
        eos = self.tokenizer.eos_token or ""
        parts: list[dict[str, Any]] = []
        for prompt, answer, frames in zip(prompts, answers, videos, strict=True):
            enc = self.processor(text=[self.chat_prompt(prompt)], videos=[frames],
                                 return_tensors="pt")
            ans = self.tokenizer(answer + eos, add_special_tokens=False,
                                 return_tensors="pt")["input_ids"]
            parts.append({"enc": enc, "answer": ans})
        width = max(p["enc"]["input_ids"].shape[1] + p["answer"].shape[1] for p in parts)
        seq_keys = [k for k, v in parts[0]["enc"].items()
                    if torch.is_tensor(v) and v.shape == parts[0]["enc"]["input_ids"].shape]
        batch: dict[str, list[torch.Tensor]] = {k: [] for k in seq_keys}
        batch["labels"] = []
        other: dict[str, list[torch.Tensor]] = {}
        for p in parts:
            enc, ans = p["enc"], p["answer"]
            n_prompt, n_ans = enc["input_ids"].shape[1], ans.shape[1]
            pad = width - n_prompt - n_ans
            fills = {"input_ids": (ans, self.pad_token_id), "attention_mask": (torch.ones_like(ans), 0)}
            for key in seq_keys:
                tail, pad_value = fills.get(key, (torch.zeros_like(ans), 0))
                row = torch.cat([enc[key], tail.to(enc[key].dtype),
                                 torch.full((1, pad), pad_value, dtype=enc[key].dtype)], dim=1)
                batch[key].append(row)
            batch["labels"].append(torch.cat([torch.full((1, n_prompt), -100), ans,
                                              torch.full((1, pad), -100)], dim=1))
            for key, value in enc.items():
                if key not in seq_keys and torch.is_tensor(value):
                    other.setdefault(key, []).append(value)
        out = {k: torch.cat(v, dim=0) for k, v in {**batch, **other}.items()}
        return {k: v.to(self.device) for k, v in out.items()}


def resolve(uri: str, cache_dir: str | Path | None = None) -> Path:
    """A local folder for ``uri``: a path, ``file://`` URI, or ``s3://bucket/prefix`` (downloaded)."""
    if uri.startswith("s3://"):
        from videostar.store import download_prefix

        return download_prefix(uri, cache_dir)
    path = Path(uri.removeprefix("file://"))
    if not path.is_dir():
        raise VideostarError(f"{uri}: model folder not found")
    return path


def read_card(path: Path) -> dict[str, Any]:
    card = path / MODEL_CARD
    return json.loads(card.read_text()) if card.exists() else {"kind": "pretrained"}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _quantization(quantize: str | None, device: str, dtype: torch.dtype) -> dict[str, Any]:
    """``from_pretrained`` arguments for a 4-bit (QLoRA: NF4, double-quantized) base."""
    if quantize is None:
        return {}
    if quantize != "4bit" or not device.startswith("cuda"):
        raise VideostarError(f"quantize={quantize!r}: only '4bit', and only on a CUDA GPU (bitsandbytes)")
    from transformers import BitsAndBytesConfig

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                             bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
    return {"quantization_config": bnb, "device_map": {"": device}}


def load_model(
    uri: str, device: str | None = None, dtype: torch.dtype | None = None, merge: bool = True,
    adapter_base: str | None = None, quantize: str | None = None,
) -> LoadedModel:
    """Load a checkpoint folder: a pretrained model, full SFT weights, or a LoRA adapter.

    An adapter is applied to the base named in its model card, or to ``adapter_base`` when given (a
    pipeline step receives the base as its own input, at a path of its own); ``merge`` folds
    the adapter into the weights, which is what generation wants (no per-token overhead). A
    base that is itself an adapter (a PPO policy on a LoRA SFT model) is merged first.
    ``quantize='4bit'`` loads the pretrained weights in 4 bits (QLoRA; GPU only).
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = resolve(uri)
    card = read_card(path)
    device = device or default_device()
    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    processor = AutoProcessor.from_pretrained(path)
    if card["kind"] == "lora":
        from peft import PeftModel

        base_lm = load_model(adapter_base or card["base"], device, dtype, merge=True, quantize=quantize)
        model = PeftModel.from_pretrained(base_lm.model, path)
        if merge:
            model = model.merge_and_unload()
        return LoadedModel(model.eval(), processor, str(uri), card["base"])
    quant = _quantization(quantize, device, dtype)
    try:
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, **quant)
    except (OSError, ValueError) as exc:
        raise VideostarError(f"{uri}: cannot load model ({exc})") from exc
    if not quant:
        model.to(device)
    tuned_from = card["base"] if card["kind"] == "full" else str(uri)
    return LoadedModel(model.eval(), processor, str(uri), tuned_from)


def add_lora(lm: LoadedModel, cfg: LoraConfig) -> LoadedModel:
    """Wrap the model with fresh LoRA adapters on ``cfg.targets`` (base weights frozen); a 4-bit
    base is prepared for k-bit training first (norms in float32, input grads on)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = lm.model
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=cfg.targets)
    return LoadedModel(get_peft_model(model, peft_cfg), lm.processor, lm.source, lm.tuned_from)


def save_model(lm: LoadedModel, out: str | Path, kind: str, extra: dict[str, Any]) -> Path:
    """Save weights (or adapter) + processor + model card into a new folder, atomically.

    Refuses an existing folder: a cycle's model is never overwritten.
    """
    import shutil
    import tempfile

    from videostar.outputs import publish_mode

    out = Path(out)
    if out.exists():
        raise VideostarError(f"{out}: already exists; refusing to overwrite a saved model")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        lm.model.save_pretrained(tmp)
        lm.processor.save_pretrained(tmp)
        card = {"kind": kind, "base": lm.tuned_from, **extra}
        (tmp / MODEL_CARD).write_text(json.dumps(card, indent=2) + "\n")
        publish_mode(tmp)  # mkdtemp's 0700 would hide the model from the group
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
