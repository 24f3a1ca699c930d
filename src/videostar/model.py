"""Load any transformers video LMM (processor + model) and encode prompts and training pairs.

The same code path loads the tiny test checkpoint and a real 7B model (Qwen2.5-VL,
LLaVA-NeXT-Video, Video-LLaVA): ``AutoProcessor`` + ``AutoModelForImageTextToText`` from a
local folder or an object-store URI, frames from decord through ``videos=``. A folder written
by SFT holds a LoRA adapter (or full weights) plus the processor, and records its base.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videostar.config import LoraConfig
from videostar.errors import VideostarError
from videostar.families import lora_target_modules, processor_kwargs, projector_modules
from videostar.layout import MODEL_CARD
from videostar.store import resolve
from videostar.video import frame_metadata

log = logging.getLogger(__name__)

VIDEO_KWARGS = {"do_sample_frames": False}
"""Frames arrive already sampled (VideoConfig.num_frames); a processor must not resample them."""


def video_chat_prompt(processor: Any, text: str) -> str:
    """A user turn with one video and ``text``, ending where the assistant's answer starts (the
    prompt of every generation backend)."""
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def conclusion_start(answer: str) -> int:
    """Character offset where the answer's conclusion starts (``len(answer)``: none): what
    ``final_answer`` reads as the final answer (after the last "answer is", else the last
    sentence), the very span the verifiers judge; everything before it is rationale."""
    from videostar.verify.text import final_answer

    final = final_answer(answer).strip()
    at = answer.rfind(final) if final else -1
    return at if at >= 0 else len(answer)


def answer_token_weights(tokenizer: Any, answer: str, n_tokens: int, rationale_weight: float
                         ) -> torch.Tensor:
    """``(1, n_tokens)`` loss weights for the tokens of ``answer`` + end-of-turn (as encoded for
    training): ``rationale_weight`` (``sft.rationale_weight``: STEP trains on both) on tokens that
    end before the conclusion, 1 on the rest; the end of turn counts as answer, since stopping
    is part of answering."""
    weights = torch.ones((1, n_tokens))
    if rationale_weight == 1.0 or n_tokens < 2:
        return weights
    if not getattr(tokenizer, "is_fast", False):
        raise VideostarError("sft.rationale_weight != 1 needs a fast tokenizer (character offsets)")
    start = conclusion_start(answer)
    offsets = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    for i, (_, end) in enumerate(offsets[: n_tokens - 1]):  # the last token is the end of turn
        if end <= start:
            weights[0, i] = rationale_weight
    return weights


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
        if tok.pad_token_id is not None:
            return tok.pad_token_id
        return tok.eos_token_id if tok.eos_token_id is not None else self.eos_token_ids[0]

    @property
    def turn_end(self) -> str:
        """The text that ends an assistant turn: what SFT appends, so the model learns to stop.

        Taken from the chat template itself (the first special token after a rendered answer,
        e.g. ``<|im_end|>``), else from ``generation_config.eos_token_id``, else the tokenizer's
        EOS: a tokenizer may have no EOS, or one that is not the template's terminator.
        """
        probe = "videostar-probe"
        messages = [{"role": "user", "content": [{"type": "text", "text": "q"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": probe}]}]
        try:
            text = self.processor.apply_chat_template(messages, tokenize=False)
        except Exception:  # a template that cannot render an assistant turn: fall back below
            text = ""
        tail = text.rsplit(probe, 1)[1] if probe in text else ""
        special = set(self.tokenizer.all_special_tokens) | {
            t.content for t in getattr(self.tokenizer, "added_tokens_decoder", {}).values()
            if getattr(t, "special", False)}
        for token in self.tokenizer.tokenize(tail):
            if token in special:
                return token
        ids = getattr(self.model.generation_config, "eos_token_id", None)
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if ids:
            return self.tokenizer.convert_ids_to_tokens(ids[0])
        if self.tokenizer.eos_token:
            return self.tokenizer.eos_token
        raise VideostarError(f"{self.source}: no end-of-turn token (chat template, "
                             "generation_config or tokenizer)")

    @property
    def eos_token_ids(self) -> list[int]:
        """Every id that ends generation: the turn terminator, the checkpoint's EOS ids, the
        tokenizer's EOS."""
        ids = getattr(self.model.generation_config, "eos_token_id", None)
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        ids.append(self.tokenizer.convert_tokens_to_ids(self.turn_end))
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return sorted(set(ids))

    def generation_config(self, temperature: float, max_new_tokens: int) -> Any:
        """The one sampling configuration: ours in full, nothing inherited from the checkpoint.

        ``generate`` fills every unset field from the checkpoint's ``generation_config``
        (Qwen2.5-VL-7B-Instruct ships ``top_k=1``, others a repetition penalty), which would
        make "temperature 1" greedy; so every logits-shaping field is set to its neutral value.
        """
        from transformers import GenerationConfig

        sample = temperature > 0
        return GenerationConfig(
            do_sample=sample, temperature=temperature if sample else 1.0, top_k=0, top_p=1.0,
            min_p=0.0, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0, repetition_penalty=1.0,
            encoder_repetition_penalty=1.0, no_repeat_ngram_size=0, num_beams=1,
            num_return_sequences=1, max_new_tokens=max_new_tokens,
            eos_token_id=self.eos_token_ids, pad_token_id=self.pad_token_id,
            suppress_tokens=self.unsayable_ids or None,
        )

    @property
    def unsayable_ids(self) -> list[int]:
        """The special tokens an answer never holds (media placeholders, role markers), EOS aside.

        Sampled at a high temperature, a ``<|video_pad|>`` in a response breaks every later pass
        over prompt + response (the processor counts it as one more video token than the video
        has features: seen in GRPO on the tiny model), and a role marker ends the answer early."""
        eos = set(self.eos_token_ids)
        return sorted(i for i, tok in self.tokenizer.added_tokens_decoder.items()
                      if tok.special and i not in eos)

    def _process(self, texts: list[str], videos: list[np.ndarray]) -> Any:
        """The processor on texts + videos, each video with its real timing (see ``frame_metadata``)."""
        return self.processor(text=texts, videos=list(videos),
                              video_metadata=[frame_metadata(v) for v in videos],
                              padding=True, return_tensors="pt", **self.video_kwargs)

    @property
    def video_kwargs(self) -> dict[str, Any]:
        """Processor arguments for videos: ours plus the family's (videostar.families)."""
        return {**VIDEO_KWARGS, **processor_kwargs(self.model)}

    def chat_prompt(self, text: str) -> str:
        return video_chat_prompt(self.processor, text)

    def encode_prompts(self, prompts: list[str], videos: list[np.ndarray]) -> dict[str, Any]:
        """A left-padded batch for generation, so every answer starts at the same position."""
        self.tokenizer.padding_side = "left"
        enc = self._process([self.chat_prompt(p) for p in prompts], videos)
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in enc.items()}

    def encode_training(
        self, prompts: list[str], answers: list[str], videos: list[np.ndarray],
        max_length: int | None = None, names: list[str] | None = None,
        clipped: list[str] | None = None, rationale_weight: float | None = None,
    ) -> dict[str, Any]:
        """A right-padded batch with ``labels`` on the answer tokens only (-100 elsewhere).

        Each prompt goes through the processor alone (which expands the video placeholder) and
        the answer is tokenized without it, so the prompt/answer boundary is exact for any
        tokenizer. Per-sample vision tensors are concatenated along dim 0, which matches both
        the flattened-patch (Qwen) and the batch-first (LLaVA) conventions. With ``max_length``
        an answer is cut so prompt + answer fit; each cut item adds one line to ``clipped``
        (named by ``names``) and to the log. With ``rationale_weight`` the batch also carries
        ``loss_weights`` (labels' shape): that weight on rationale tokens, 1 on the final answer
        (:func:`answer_token_weights`), 0 off the answer.
        """
        eos = self.turn_end
        parts: list[dict[str, Any]] = []
        for prompt, answer, frames in zip(prompts, answers, videos, strict=True):
            enc = self._process([self.chat_prompt(prompt)], [frames])
            ans = self.tokenizer(answer + eos, add_special_tokens=False,
                                 return_tensors="pt")["input_ids"]
            n_prompt = enc["input_ids"].shape[1]
            weights = (None if rationale_weight is None else
                       answer_token_weights(self.tokenizer, answer, ans.shape[1], rationale_weight))
            if max_length is not None and n_prompt + ans.shape[1] > max_length:
                keep = max(0, max_length - n_prompt)
                name = names[len(parts)] if names else f"item {len(parts)}"
                line = (f"{name}: {n_prompt} prompt + {ans.shape[1]} answer tokens > max_length "
                        f"{max_length}; answer cut to {keep} tokens")
                log.warning(line)
                if clipped is not None:
                    clipped.append(line)
                ans = ans[:, :keep]
            parts.append({"enc": enc, "answer": ans,
                          "weights": None if weights is None else weights[:, :ans.shape[1]]})
        width = max(p["enc"]["input_ids"].shape[1] + p["answer"].shape[1] for p in parts)
        seq_keys = [k for k, v in parts[0]["enc"].items()
                    if torch.is_tensor(v) and v.shape == parts[0]["enc"]["input_ids"].shape]
        batch: dict[str, list[torch.Tensor]] = {k: [] for k in seq_keys}
        batch["labels"] = []
        if rationale_weight is not None:
            batch["loss_weights"] = []
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
            if p["weights"] is not None:
                batch["loss_weights"].append(torch.cat([torch.zeros((1, n_prompt)), p["weights"],
                                                        torch.zeros((1, pad))], dim=1))
            for key, value in enc.items():
                if key not in seq_keys and torch.is_tensor(value):
                    other.setdefault(key, []).append(value)
        out = {k: torch.cat(v, dim=0) for k, v in {**batch, **other}.items()}
        return {k: v.to(self.device) for k, v in out.items()}


def read_card(path: Path) -> dict[str, Any]:
    card = path / MODEL_CARD
    return json.loads(card.read_text()) if card.exists() else {"kind": "pretrained"}


@contextlib.contextmanager
def refused_pickles(path: Path) -> Iterator[None]:
    """Loading a model folder: a pickled weights file that torch's weights-only loader refuses
    (it holds objects, which could run code; nothing has run) is named in one line."""
    try:
        yield
    except pickle.UnpicklingError as exc:
        names = sorted(p.name for pat in ("*.bin", "*.pt", "*.pth", "*.pkl") for p in path.glob(pat))
        where = path / names[0] if len(names) == 1 else path
        raise VideostarError(f"{where}: refused by torch's weights-only loader (it holds more than "
                             "tensors, which could run code); save the model as safetensors") from exc


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
    attn_implementation: str | None = None, fold: bool = False,
) -> LoadedModel:
    """Load a checkpoint folder: a pretrained model, full SFT weights, or a LoRA adapter.

    An adapter is applied to the base named in its model card, or to ``adapter_base`` when given (a
    pipeline step receives the base as its own input, at a path of its own); ``merge`` folds
    the adapter into float32 weights (no per-token overhead). In bf16 it stays unmerged:
    ``W + BA`` rounded to bf16 drops most of a small ``BA`` (26-99 % measured). A base that is
    itself an adapter (a PPO policy on a LoRA SFT model) is folded in first (``plain_model``).
    ``fold`` is for a model that is the base of a new adapter (the reward, value and PPO
    models on a LoRA SFT model): the adapter is folded into the base's float32 weights on the
    CPU and the sum cast to ``dtype`` once, so a small SFT update survives in expectation (a bf16
    fold, bf16 W + bf16 BA, keeps 6 % of an update of 1e-4 of the weights' rms, 52 % of 1e-3).
    ``quantize='4bit'`` loads the pretrained weights in 4 bits (QLoRA; GPU only);
    ``attn_implementation`` (``sdpa``, ``flash_attention_2``, ``eager``) is passed to transformers.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = resolve(uri)
    card = read_card(path)
    device = device or default_device()
    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    processor = AutoProcessor.from_pretrained(path)
    if card["kind"] == "lora" and fold and dtype != torch.float32 and not quantize:
        folded = load_model(uri, "cpu", torch.float32, adapter_base=adapter_base,
                            attn_implementation=attn_implementation)
        keep = tuple(getattr(folded.model, "_keep_in_fp32_modules", None) or ())
        for name, p in folded.model.named_parameters():
            if p.dtype == torch.float32 and not any(k in name for k in keep):
                p.data = p.data.to(dtype)
        folded.model.to(device)
        return folded
    if card["kind"] == "lora":
        from peft import PeftModel

        base_lm = load_model(adapter_base or card["base"], device, dtype, quantize=quantize,
                             attn_implementation=attn_implementation)
        with refused_pickles(path):
            model = PeftModel.from_pretrained(plain_model(base_lm.model), path)
        if merge and dtype == torch.float32 and not quantize:
            model = model.merge_and_unload()
        return LoadedModel(model.eval(), processor, str(uri), card["base"])
    quant = _quantization(quantize, device, dtype)
    if attn_implementation:
        quant["attn_implementation"] = attn_implementation
    try:
        with refused_pickles(path):
            model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, **quant)
    except (OSError, ValueError) as exc:
        raise VideostarError(f"{uri}: cannot load model ({exc})") from exc
    if not quantize:
        model.to(device)
    tuned_from = card["base"] if card["kind"] == "full" else str(uri)
    return LoadedModel(model.eval(), processor, str(uri), tuned_from)


def plain_model(model: Any) -> Any:
    """``model`` with any LoRA adapter folded into its weights: a new adapter needs a plain base.
    (In bf16 this fold is lossy for a small adapter; it is the base of a second adapter only.)"""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def lora_scope(model: torch.nn.Module, cfg: LoraConfig) -> tuple[list[str], list[str]]:
    """The one place LoRA's reach is decided -> ``(target module names, modules_to_save)``.

    PEFT matches ``targets`` by name suffix, which also wraps the vision encoder's layers
    (Qwen2.5-VL's ``visual.blocks.*.mlp.*_proj``, the CLIP tower's q/k/v). With ``scope:
    language`` only the language model's linear layers are wrapped (where it lives and which
    layers: the family table, videostar.families); ``scope: all`` keeps PEFT's suffix matching.
    ``train_projector`` trains the projector in full (``modules_to_save``), as LLaVA-style
    recipes do.
    """
    if cfg.scope == "language":
        targets = lora_target_modules(model, cfg.targets or None)
    else:
        names = set(cfg.targets or lora_target_modules(model))
        names = {n.rsplit(".", 1)[-1] for n in names}
        targets = [name for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in names]
    projector = projector_modules(model) if cfg.train_projector else []
    return targets, projector


def add_lora(lm: LoadedModel, cfg: LoraConfig) -> LoadedModel:
    """Wrap the model with fresh LoRA adapters where ``lora_scope`` says (base weights frozen);
    a 4-bit base is prepared for k-bit training first (norms in float32, input grads on)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = plain_model(lm.model)
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    targets, projector = lora_scope(model, cfg)
    peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=targets, modules_to_save=projector or None)
    return LoadedModel(get_peft_model(model, peft_cfg), lm.processor, lm.source, lm.tuned_from)


def disable_dropout(module: torch.nn.Module) -> None:
    """Set every dropout probability to 0 (LoRA's ``lora_dropout`` included); train mode stays
    usable for gradient checkpointing. TRL's helper does the same, but TRL is not a dependency."""
    for sub in module.modules():
        if isinstance(sub, torch.nn.Dropout):
            sub.p = 0.0


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
