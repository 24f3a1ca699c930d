"""Answer generation behind one interface, Hugging Face ``generate`` or vLLM, and the resumable
writer of a step's answers (:func:`generate_answers`).

``generate.backend: hf`` (the default, in the main install) runs ``model.generate`` on a loaded
checkpoint (:func:`generate_batch`). ``generate.backend: vllm`` serves the same checkpoint with
vLLM, for real scale on a GPU: the ``images/vllm.Dockerfile`` image (the ``vllm`` extra names the
pin). vLLM pins its own torch and transformers (0.33: torch 2.14, transformers < 5.21; the main
install has 2.15 and 5.23), so it stays out of the main install and of ``dev``, and its image lets
vLLM's pins win.

The vLLM requests are plain dicts in vLLM's prompt format, built without importing vLLM: the
chat-template prompt, the frames as ``multi_modal_data`` with their timing (source fps, frame
indices, clip length) so Qwen-VL's timestamps are the clip's real seconds, and
``mm_processor_kwargs`` that forbid resampling. vLLM itself is imported only when an engine starts.

Answers are written as they are produced to a partial file, so an interrupted run resumes where
it stopped; a video that cannot be read is reported with its reason and skipped. Sampling draws
from one random stream per row, seeded by the row's id: a row's answer does not depend on the
rows batched with it, so a run resumed after a torn batch writes what an uninterrupted one
would have.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from tqdm import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from videostar.config import GenerateConfig, VideoConfig
from videostar.data.records import JsonlAppender, Record
from videostar.errors import VideoError, VideostarError
from videostar.model import LoadedModel, read_card, video_chat_prompt
from videostar.prompts import PromptFn
from videostar.store import resolve
from videostar.video import frame_metadata, read_frames

INSTALL_VLLM = "run it in the images/vllm.Dockerfile image on a CUDA machine; see docs/generation.md"


@runtime_checkable
class Generator(Protocol):
    """What answer generation needs from a model, whichever engine serves it."""

    backend: str

    def generate(self, prompts: list[str], videos: list[np.ndarray], seeds: Sequence[int]) -> list[str]:
        """One answer per prompt about its video (frames with their timing, as
        :func:`videostar.video.read_frames` returns them); row ``i`` samples with ``seeds[i]``,
        so an answer does not depend on the rows batched with it."""
        ...

    def settings(self) -> dict[str, Any]:
        """The sampling settings, recorded in the step's metrics."""
        ...


class HFGenerator:
    """``model.generate`` on a loaded checkpoint: left-padded batches, per-row sampling."""

    backend = "hf"

    def __init__(self, lm: LoadedModel, cfg: GenerateConfig) -> None:
        self.lm, self.cfg = lm, cfg

    def generate(self, prompts: list[str], videos: list[np.ndarray], seeds: Sequence[int]) -> list[str]:
        return generate_batch(self.lm, prompts, videos, self.cfg, list(seeds))

    def settings(self) -> dict[str, Any]:
        return self.lm.generation_config(self.cfg.temperature, self.cfg.max_new_tokens).to_diff_dict()


def video_request(prompt: str, frames: np.ndarray, processor_kwargs: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """One vLLM prompt: ``prompt`` (chat template applied) and its video with the timing the HF
    path gives the processor (:func:`videostar.video.frame_metadata`, the one place for it).

    The metadata carries the source fps and the sampled frames' indices, from which Qwen3-VL
    computes its timestamps; ``mm_processor_kwargs.fps`` is the sampled frame rate, from which
    Qwen2.5-VL's ``second_per_grid_ts`` derives. ``do_sample_frames: False``: the frames are the
    sampled ones already.
    """
    meta = frame_metadata(frames)
    indices = list(meta.frames_indices) if meta.frames_indices is not None else list(range(len(frames)))
    fps = meta.fps if meta.fps is not None else meta.sampled_fps  # bare frames: the processor's guess
    metadata = {"fps": float(fps), "frames_indices": indices, "total_num_frames": int(meta.total_num_frames),
                "duration": float(meta.total_num_frames / fps), "do_sample_frames": False}
    return {"prompt": prompt,
            "multi_modal_data": {"video": [(np.asarray(frames), metadata)]},
            "mm_processor_kwargs": {**(processor_kwargs or {}), "fps": float(meta.sampled_fps),
                                    "do_sample_frames": False}}


def sampling_settings(cfg: GenerateConfig, seed: int, stop_token_ids: Sequence[int] = ()) -> dict[str, Any]:
    """vLLM ``SamplingParams`` fields of one request: ours in full (the engine is started with
    ``generation_config="vllm"``, so nothing comes from the checkpoint, as on the HF path), the
    row's own seed, and the ids that end an answer (the HF path's ``eos_token_ids``)."""
    return {"n": 1, "temperature": cfg.temperature, "top_p": 1.0, "top_k": 0, "min_p": 0.0,
            "repetition_penalty": 1.0, "max_tokens": cfg.max_new_tokens, "seed": seed,
            "stop_token_ids": list(stop_token_ids), "skip_special_tokens": True}


def parse_outputs(outputs: Sequence[Any], count: int) -> list[str]:
    """The answers in vLLM's ``RequestOutput`` list (request order): each request's one
    completion, stripped as the HF path strips it. A missing completion is an error naming the
    request, never a silent empty answer."""
    if len(outputs) != count:
        raise VideostarError(f"vLLM returned {len(outputs)} outputs for {count} requests")
    answers = []
    for out in outputs:
        if not out.outputs:
            raise VideostarError(f"vLLM request {out.request_id}: no completion")
        answers.append(out.outputs[0].text.strip())
    return answers


class VllmGenerator:
    """A checkpoint served by vLLM: a pretrained or fully tuned folder, or a LoRA adapter on the
    base its model card names (or ``adapter_base``), applied per request as vLLM's LoRA.
    ``engine_args`` go to ``vllm.LLM`` as well (e.g. ``gpu_memory_utilization``,
    ``tensor_parallel_size``); the engine starts on first use."""

    backend = "vllm"

    def __init__(self, source: str, cfg: GenerateConfig, adapter_base: str | None = None,
                 engine_args: dict[str, Any] | None = None) -> None:
        from transformers import AutoConfig, AutoProcessor

        from videostar.families import FAMILIES

        path = resolve(source)
        card = read_card(path)
        self.adapter = path if card["kind"] == "lora" else None
        self.base = resolve(adapter_base or card["base"]) if self.adapter else path
        self.cfg = cfg
        self.processor = AutoProcessor.from_pretrained(path)
        family = FAMILIES.get(AutoConfig.from_pretrained(self.base).model_type)
        self.processor_kwargs = dict(family.processor_kwargs) if family else {}
        self.stop_token_ids = _stop_token_ids(self.processor, self.base)
        self.engine_args = engine_args or {}
        self._llm: Any = None

    def requests(self, prompts: list[str], videos: list[np.ndarray]) -> list[dict[str, Any]]:
        """The vLLM prompts of one batch (:func:`video_request`)."""
        return [video_request(video_chat_prompt(self.processor, p), v, self.processor_kwargs)
                for p, v in zip(prompts, videos, strict=True)]

    def engine_settings(self) -> dict[str, Any]:
        """``vllm.LLM`` arguments: one video per prompt, no sampling defaults from the checkpoint,
        LoRA sized from the adapter's rank."""
        settings: dict[str, Any] = {"model": str(self.base), "tokenizer": str(self.base), "seed": 0,
                                    "generation_config": "vllm", "limit_mm_per_prompt": {"video": 1}}
        if self.adapter:
            rank = json.loads((self.adapter / "adapter_config.json").read_text())["r"]
            settings |= {"enable_lora": True, "max_lora_rank": max(8, int(rank))}
        return settings | self.engine_args

    def engine(self) -> Any:
        """The ``vllm.LLM``, started on first use."""
        if self._llm is None:
            from vllm import LLM

            self._llm = LLM(**self.engine_settings())
        return self._llm

    def lora_request(self) -> Any:
        """vLLM's handle on the adapter (None for a plain checkpoint)."""
        from vllm.lora.request import LoRARequest

        return LoRARequest("adapter", 1, str(self.adapter)) if self.adapter else None

    def generate(self, prompts: list[str], videos: list[np.ndarray], seeds: Sequence[int]) -> list[str]:
        from vllm import SamplingParams

        params = [SamplingParams(**sampling_settings(self.cfg, int(s), self.stop_token_ids)) for s in seeds]
        outputs = self.engine().generate(self.requests(prompts, videos), params,
                                         lora_request=self.lora_request(), use_tqdm=False)
        return parse_outputs(outputs, len(prompts))

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in sampling_settings(self.cfg, 0, self.stop_token_ids).items() if k != "seed"}


def _stop_token_ids(processor: Any, base: Any) -> list[int]:
    """The ids that end an answer, as :attr:`LoadedModel.eos_token_ids` finds them (the chat
    template's turn terminator, the checkpoint's EOS ids, the tokenizer's EOS), without loading
    the weights: only the checkpoint's ``generation_config.json`` is read."""
    from types import SimpleNamespace

    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(base)
    except OSError:  # no generation_config.json: the template and the tokenizer decide
        config = GenerationConfig()
    shell = LoadedModel(SimpleNamespace(generation_config=config), processor, str(base), str(base))
    return shell.eos_token_ids


def load_generator(source: str, cfg: GenerateConfig, adapter_base: str | None = None) -> Generator:
    """The generator ``generate.backend`` names, for the checkpoint ``source``."""
    if cfg.backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise VideostarError(f"generate.backend vllm: vLLM is not installed ({INSTALL_VLLM})")
        return VllmGenerator(source, cfg, adapter_base)
    from videostar.model import load_model

    return HFGenerator(load_model(source, adapter_base=adapter_base), cfg)


def as_generator(model: LoadedModel | Generator, cfg: GenerateConfig) -> Generator:
    """A loaded model as the HF generator; a generator as it is."""
    return model if isinstance(model, Generator) else HFGenerator(model, cfg)


def _batches(
    records: list[Record], video: VideoConfig, size: int, errors: list[dict[str, str]]
) -> Iterator[list[tuple[Record, np.ndarray]]]:
    """Decode frames record by record; unreadable videos go to ``errors`` instead of a batch."""
    batch: list[tuple[Record, np.ndarray]] = []
    for rec in records:
        try:
            frames = read_frames(rec.video, video.num_frames, rec.start, rec.end,
                                 video.fps, video.max_frames, video.max_pixels, video.backend)
        except VideoError as exc:
            errors.append({"id": rec.id, "video": rec.video, "reason": exc.cause})
            continue
        batch.append((rec, frames))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def row_seed(seed: int, key: str) -> int:
    """A row's sampling seed from the run's seed and the row's key (its id)."""
    digest = hashlib.sha1(f"{key}#{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class RowSampler(LogitsProcessor):
    """Temperature sampling with one generator per row (the Gumbel-max trick: the argmax of
    ``logits / T + Gumbel noise`` is a sample of ``softmax(logits / T)``), applied as a logits
    processor under greedy search. ``generate``'s own sampling draws from one global stream,
    so a row's answer would depend on its batch-mates and a resumed run would differ."""

    def __init__(self, seeds: Sequence[int], temperature: float):
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature = temperature

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        vocab = scores.shape[-1]
        uniform = torch.stack([torch.rand(vocab, generator=g, dtype=torch.float64)
                               for g in self.generators]).clamp_(1e-300, 1.0)
        gumbel = -torch.log(-torch.log(uniform))
        logp = torch.log_softmax(scores.double() / self.temperature, dim=-1)
        return (logp + gumbel.to(scores.device)).to(scores.dtype)


@torch.inference_mode()
def generate_batch(
    lm: LoadedModel, prompts: list[str], videos: list[np.ndarray], cfg: GenerateConfig,
    seed: int | Sequence[int],
) -> list[str]:
    """One left-padded batch through ``model.generate``; returns the decoded new text.

    Sampling follows ``cfg`` alone (:meth:`LoadedModel.generation_config`), never the
    checkpoint's own generation settings. ``seed``: each row's sampling seed, or one seed
    from which row ``i`` gets ``row_seed(seed, str(i))``.
    """
    seeds = [row_seed(seed, str(i)) for i in range(len(prompts))] if isinstance(seed, int) else seed
    inputs = lm.encode_prompts(prompts, videos)
    sampler = [RowSampler(seeds, cfg.temperature)] if cfg.temperature > 0 else []
    out = lm.model.generate(
        **inputs, generation_config=lm.generation_config(0.0, cfg.max_new_tokens),
        logits_processor=LogitsProcessorList(sampler),
    )
    new_tokens = out[:, inputs["input_ids"].shape[1]:]
    texts = lm.processor.batch_decode(new_tokens, skip_special_tokens=True)
    return [t.strip() for t in texts]


def generate_answers(
    lm: LoadedModel | Generator,
    records: list[Record],
    out_path: str | Path,
    cfg: GenerateConfig,
    video: VideoConfig,
    prompt_fn: PromptFn,
    kind: str = "answer",
    annotate: Callable[[Record, str], dict[str, Any]] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate one answer per record into ``out_path`` (JSONL); returns the step's metrics.

    Each output row is the record plus ``answer`` and ``prompt_kind``; ``annotate`` may add
    fields. Ids already in ``out_path`` (or its partial file) are skipped. ``lm``: a loaded model
    (HF ``generate``) or any :class:`Generator` (e.g. vLLM).
    """
    generator = as_generator(lm, cfg)
    appender = JsonlAppender(out_path)
    todo = [r for r in records if r.id not in appender.done_ids]
    errors: list[dict[str, str]] = []
    started = time.perf_counter()
    generated = 0
    try:
        with tqdm(total=len(todo), desc=f"generate[{kind}]", disable=not progress, unit="q") as bar:
            for batch in _batches(todo, video, cfg.batch_size, errors):
                recs = [r for r, _ in batch]
                texts = generator.generate([prompt_fn(r) for r in recs], [f for _, f in batch],
                                           [row_seed(cfg.seed, r.id) for r in recs])
                rows = []
                for rec, text in zip(recs, texts, strict=True):
                    row = rec.to_json() | {"answer": text, "prompt_kind": kind}
                    rows.append(row | (annotate(rec, text) if annotate else {}))
                appender.write(rows)
                generated += len(rows)
                bar.update(len(rows))
            appender.finish()
    finally:
        appender.close()
    seconds = time.perf_counter() - started
    return {
        "step": "generate" if kind == "answer" else kind,
        "backend": generator.backend,
        "generation_config": generator.settings(),
        "records": len(records),
        "skipped_existing": len(records) - len(todo),
        "generated": generated,
        "video_errors": errors,
        "seconds": round(seconds, 3),
        "answers_per_s": round(generated / seconds, 3) if seconds > 0 else None,
    }
