"""The tiny video LMM used by tests and the demo: a real Qwen2.5-VL checkpoint, ~0.4M parameters.

It is written exactly like a hub checkpoint (config, safetensors, tokenizer, processor, chat
template), so it loads through the same ``AutoProcessor``/``AutoModelForImageTextToText`` path
as a 7B model. A randomly initialised model cannot learn through LoRA (its logits stay flat),
so the builder first fully fine-tunes it briefly on partly noisy captions of synthetic shape
videos: a weak but real starting point, as a pretrained base is for Video-STaR. Like a real
instruction-tuned LMM it also learns to use a hint ("Answer: X. Explain ...") when given one,
which is what label rationalization relies on.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import torch

from videostar.config import (
    GenerateConfig,
    LoraConfig,
    RationalizeConfig,
    SFTConfig,
    VideoConfig,
)
from videostar.data.records import Record
from videostar.data.synthetic import (
    COLOURS,
    SHAPES,
    SYNTHETIC_TASKS,
    ShapeVideo,
    build_synthetic,
    reference_answer,
)
from videostar.model import LoadedModel, save_model
from videostar.prompts import DEFAULT_TEMPLATES
from videostar.tiny.tokenizer import SPECIAL_TOKENS, build_tokenizer

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
INIT_STD = 0.1
"""Weights start 5x wider than the usual 0.02: at hidden size 64 that is what lets it learn fast."""
FRAME_SIZE = 56
"""Frames are resized to 56x56: 4x4 patches of 14 px, merged 2x2, so 8 frames give 16 tokens."""


def build_random(seed: int = 0, step: bool = False) -> LoadedModel:
    """The untrained tiny Qwen2.5-VL with its processor; ``step``: its tokenizer also learns
    STEP's wording (left out otherwise, so the Video-STaR base stays as it was)."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tok = build_tokenizer({k: v for k, v in DEFAULT_TEMPLATES.items() if step or not k.startswith("step_")})
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    size = {"shortest_edge": FRAME_SIZE * FRAME_SIZE, "longest_edge": FRAME_SIZE * FRAME_SIZE}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        video_processor=Qwen2VLVideoProcessor(size=size),
        tokenizer=tok, chat_template=CHAT_TEMPLATE,
    )
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "max_position_embeddings": 4096, "bos_token_id": None, "initializer_range": INIT_STD,
            "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": [4, 6, 6]},
        },
        vision_config={
            "depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
            "out_hidden_size": 64, "fullatt_block_indexes": [1], "window_size": 112,
            "patch_size": 14, "temporal_patch_size": 2, "spatial_merge_size": 2,
            "initializer_range": INIT_STD, "tokens_per_second": 2,  # as Qwen2.5-VL-7B-Instruct
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return LoadedModel(model.eval(), processor, "tiny", "")


LOOKALIKE = {"red": "yellow", "yellow": "red", "green": "blue", "blue": "green"}
"""The colour the base mistakes each colour for: a pretrained model's errors are systematic (a
bias the labels must correct), not uniform noise that greedy decoding averages away."""

LOOKALIKE_SEGMENT = {(0.0, 0.5): (0.5, 1.0), (0.5, 1.0): (0.0, 0.5), (0.25, 0.75): (0.0, 1.0),
                     (0.0, 1.0): (0.25, 0.75)}
"""The segment the base mistakes each segment for (which half comes first; the middle for the
whole): IoU 0 or 0.5 with the true one, so the timing verifier (IoU > 0.5) rejects it."""


def _confused(rec: Record, rng: random.Random, confusion: float) -> str:
    """The reference answer of a synthetic shape record; with probability ``confusion`` the
    whole answer for the look-alike colour and segment instead (the score follows the colour).
    Every task carries the bias, so how weak the base starts does not hang on the one task a
    seed happens to learn well."""
    if rng.random() >= confusion:
        return rec.meta["reference"]
    video = ShapeVideo(rec.meta["colour"], rec.meta["shape"], tuple(rec.meta["segment"]))
    return reference_answer(rec.task, ShapeVideo(LOOKALIKE[video.colour], video.shape,
                                                 LOOKALIKE_SEGMENT[video.segment]))


def _noisy(answer: str, rng: random.Random, noise: float) -> str:
    """Swap the colour or shape word for a random one with probability ``noise``."""
    if rng.random() >= noise:
        return answer
    words = list(COLOURS) if rng.random() < 0.5 else list(SHAPES)
    present = [w for w in words if w in answer]
    return answer.replace(present[0], rng.choice(words)) if present else answer


def build_tiny(
    out: str | Path, videos: int = 128, steps: int = 1000, noise: float = 0.3, lr: float = 3e-3,
    confusion: float = 0.65, seed: int = 0, progress: bool = True, scenegraph_videos: int = 0,
    arch: str | None = None,
) -> dict[str, Any]:
    """Write the tiny base to ``out``: random init, then a short full fine-tune on noisy captions.

    ``confusion`` sets how weak the start is: that share of its shape captions describe the
    look-alike colour and segment (``LOOKALIKE``, ``LOOKALIKE_SEGMENT``), so the base answers
    the wrong colour (score, segment) more often than not, while hints are always right; the
    defaults give a first-cycle answer yield of 0.26-0.32 on the demo's questions, and its
    labels correct the bias. The 1000 steps (about 10 passes over the captions) make the vision
    tower see colour and shape well enough to tell unseen videos apart (300 steps: held-out
    accuracy 0.375-0.625 after the demo's cycles; 800 steps: 0.29 in one seed). ``scenegraph_videos`` >
    0 adds the reference rationales (graph paths) of that many synthetic scene-graph videos, a
    share ``noise`` of them with a random wrong word, so the base can start STEP's cycles.
    ``arch`` builds that family's tiny model (videostar.tiny.families) instead of the Qwen2.5-VL
    one; ``steps=0`` leaves it random.
    """
    from videostar.prompts import answer_prompt, hint_prompt
    from videostar.star.sft import Example, train
    from videostar.tiny.families import build_arch

    lm = build_random(seed, step=scenegraph_videos > 0) if arch is None else build_arch(arch, seed)
    info = {"recipe": "tiny" if arch is None else f"tiny-{arch}", "noise": noise,
            "confusion": confusion, "steps": steps,
            "scenegraph_videos": scenegraph_videos}
    if not steps:
        save_model(lm, out, "pretrained", info)
        return {"model": str(out), "params": sum(p.numel() for p in lm.model.parameters())}
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="videostar-tiny-") as tmp:
        data = build_synthetic(tmp, videos, DEFAULT_TEMPLATES, seed=10_000 + seed,
                               tasks=SYNTHETIC_TASKS)
        if scenegraph_videos:
            from videostar.config.scenegraph import ScenegraphConfig
            from videostar.scenegraph.questions import build_scenegraph_records
            from videostar.scenegraph.synthetic import write_scene_videos

            graphs = write_scene_videos(Path(tmp) / "step", scenegraph_videos, seed=10_000 + seed)
            paths = ScenegraphConfig(min_steps=1)  # 1-step paths too: which shape met the focus when
            data.records += build_scenegraph_records(graphs, paths, DEFAULT_TEMPLATES).records
        ask, hinted = answer_prompt(GenerateConfig().instruction), hint_prompt(RationalizeConfig().hint)
        examples = [Example(r.id, r.video, ask(r), _confused(r, rng, confusion) if "colour" in r.meta
                            else _noisy(r.meta["reference"], rng, noise)) for r in data.records]
        examples += [Example(r.id + "/hint", r.video, hinted(r), r.meta["reference"])
                     for r in data.records]
        cfg = SFTConfig(lr=lr, epochs=steps * 8 / len(examples), batch_size=8, warmup_ratio=0.05,
                        seed=seed, lora=LoraConfig(enabled=False))
        # One thread: a 0.4M-parameter model gains little from more (about 15 steps/s with two
        # idle cores, 13-14 with one beside other work), and beside other work two threads
        # spin (0.2-2 steps/s measured on the 2-core machine).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            metrics = train(lm, examples, cfg, VideoConfig(num_frames=8), progress)
        finally:
            torch.set_num_threads(threads)
    save_model(lm, out, "pretrained", info)
    return {"model": str(out), "params": sum(p.numel() for p in lm.model.parameters()),
            "pretrain_loss": metrics["train_loss"], "seconds": metrics["seconds"]}

