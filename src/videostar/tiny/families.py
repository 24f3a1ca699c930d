"""Tiny random checkpoints of every video LMM family transformers runs (``model tiny --arch``).

Each one is the family's real model class, processor class, video placeholder and chat template
(the template text of the official checkpoint), built from the family's config class at a few
hundred thousand parameters with a locally trained tokenizer, and written like a hub download,
so it loads through ``AutoProcessor`` + ``AutoModelForImageTextToText``. Weights are random
(``--pretrain-steps N`` pretrains them as ``videostar.tiny.base`` does the demo base): these exist to prove
every step runs on every family.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from videostar.model import LoadedModel
from videostar.prompts import DEFAULT_TEMPLATES
from videostar.tiny.tokenizer import build_tokenizer

TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 4096,
        "initializer_range": 0.1, "bos_token_id": None}
"""One small decoder for every family (Llama/Qwen2-style keys): 2 layers, hidden 64."""
CLIP = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "image_size": 28, "patch_size": 14, "projection_dim": 32}
"""A 28 px, 2x2-patch CLIP/SigLIP tower for the LLaVA families."""
QWEN_VISION = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
               "patch_size": 14, "temporal_patch_size": 2, "spatial_merge_size": 2}
QWEN_SIZE = {"shortest_edge": 56 * 56, "longest_edge": 56 * 56}
"""Qwen-style processors resize to 56x56: 4x4 patches merged 2x2, 4 tokens per 2 frames."""

CHATML = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_SPECIAL = [*CHATML, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
# Chat templates below are the official checkpoints' own (their video/text parts).
QWEN2_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN3_VL_TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{%- if message['content'] is string %}{{ message['content'] }}{%- else %}"
    "{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif content['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in content %}{{ content['text'] }}{%- endif %}{%- endfor %}{%- endif %}"
    "<|im_end|>\n{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)
VICUNA_TEMPLATE = (  # llava-hf/LLaVA-NeXT-Video-7B-hf and LanguageBind/Video-LLaVA-7B-hf
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
ONEVISION_TEMPLATE = (  # llava-hf/llava-onevision-qwen2-7b-ov-hf
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' '}}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\n' + content['text'] }}{% endfor %}{{ '<|im_end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
INTERNVL_TEMPLATE = (  # OpenGVLab/InternVL3-8B-hf
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "{{ '<image>\n' }}{% elif content['type'] == 'video' %}{{ '<video>\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{'<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}"
    "{% endif %}"
)
SMOLVLM_TEMPLATE = (  # HuggingFaceTB/SmolVLM2-2.2B-Instruct
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}"
    "{{ '<video>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
VIDEOLLAMA3_TEMPLATE = (  # lkhl/VideoLLaMA3-2B-Image-HF
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}<|image_pad|>\n"
    "{% elif content['type'] == 'video' %}<|video_pad|>\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer(special: list[str], eos: str, pad: str, named: dict[str, str] | None = None) -> Any:
    return build_tokenizer(DEFAULT_TEMPLATES, special, eos, pad, named or {})


def _text(tok: Any, eos: str, pad: str, **extra: Any) -> dict[str, Any]:
    return {**TEXT, "vocab_size": len(tok), "eos_token_id": tok.convert_tokens_to_ids(eos),
            "pad_token_id": tok.convert_tokens_to_ids(pad), **extra}


def _qwen(version: str) -> tuple[Any, Any]:
    import transformers as tf

    tok = _tokenizer(QWEN_SPECIAL, "<|im_end|>", "<|endoftext|>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    tokens = {"image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
              "vision_start_token_id": ids["<|vision_start|>"],
              "vision_end_token_id": ids["<|vision_end|>"]}
    if version == "3":
        vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                  "out_hidden_size": 64, "patch_size": 14, "temporal_patch_size": 2,
                  "spatial_merge_size": 2, "num_position_embeddings": 16,
                  "deepstack_visual_indexes": [1]}
        text = _text(tok, "<|im_end|>", "<|endoftext|>", head_dim=32, rope_parameters={
            "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6],
            "mrope_interleaved": True})
        config = tf.Qwen3VLConfig(text_config=text, vision_config=vision, **tokens)
        processor = tf.Qwen3VLProcessor(
            image_processor=tf.Qwen2VLImageProcessor(size=QWEN_SIZE, patch_size=14),
            video_processor=tf.Qwen3VLVideoProcessor(size=QWEN_SIZE, patch_size=14),
            tokenizer=tok, chat_template=QWEN3_VL_TEMPLATE)
        return config, processor
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]}
    text = _text(tok, "<|im_end|>", "<|endoftext|>", rope_parameters=rope)
    if version == "2":
        vision = {"depth": 2, "embed_dim": 32, "hidden_size": 64, "mlp_ratio": 2, "num_heads": 2,
                  "patch_size": 14, "temporal_patch_size": 2, "spatial_merge_size": 2}
        config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **tokens)
        proc_cls = tf.Qwen2VLProcessor
    else:
        vision = {**QWEN_VISION, "out_hidden_size": 64, "fullatt_block_indexes": [1], "window_size": 112}
        config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **tokens)
        proc_cls = tf.Qwen2_5_VLProcessor
    processor = proc_cls(image_processor=tf.Qwen2VLImageProcessor(size=QWEN_SIZE),
                         video_processor=tf.Qwen2VLVideoProcessor(size=QWEN_SIZE),
                         tokenizer=tok, chat_template=QWEN2_VL_TEMPLATE)
    return config, processor


def _llava_next_video() -> tuple[Any, Any]:
    import transformers as tf

    tok = _tokenizer(["<unk>", "<s>", "</s>", "<image>", "<video>"], "</s>", "<unk>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<image>", "<video>")}
    config = tf.LlavaNextVideoConfig(
        text_config={"model_type": "llama", **_text(tok, "</s>", "<unk>")},
        vision_config={"model_type": "clip_vision_model", **CLIP},
        image_token_index=ids["<image>"], video_token_index=ids["<video>"],
        image_grid_pinpoints=[[28, 28]], spatial_pool_stride=2, tie_word_embeddings=False)
    crop = {"height": 28, "width": 28}
    processor = tf.LlavaNextVideoProcessor(
        video_processor=tf.LlavaNextVideoVideoProcessor(size={"shortest_edge": 28}, crop_size=crop),
        image_processor=tf.LlavaNextImageProcessor(size={"shortest_edge": 28}, crop_size=crop,
                                                   image_grid_pinpoints=[[28, 28]]),
        tokenizer=tok, chat_template=VICUNA_TEMPLATE, patch_size=14,
        vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return config, processor


def _video_llava() -> tuple[Any, Any]:
    import transformers as tf

    tok = _tokenizer(["<unk>", "<s>", "</s>", "<image>", "<video>"], "</s>", "<unk>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<image>", "<video>")}
    config = tf.VideoLlavaConfig(
        text_config={"model_type": "llama", **_text(tok, "</s>", "<unk>")},
        vision_config={**CLIP}, image_token_index=ids["<image>"],
        video_token_index=ids["<video>"], image_seq_length=5, video_seq_length=40)
    crop = {"height": 28, "width": 28}
    processor = tf.VideoLlavaProcessor(
        image_processor=tf.VideoLlavaImageProcessor(size={"shortest_edge": 28}, crop_size=crop),
        video_processor=tf.VideoLlavaVideoProcessor(size={"shortest_edge": 28}, crop_size=crop),
        tokenizer=tok, chat_template=VICUNA_TEMPLATE, patch_size=14)
    return config, processor


def _llava_onevision() -> tuple[Any, Any]:
    import transformers as tf

    tok = _tokenizer([*CHATML, "<image>", "<video>"], "<|im_end|>", "<|endoftext|>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<image>", "<video>")}
    siglip = {k: v for k, v in CLIP.items() if k != "projection_dim"}
    config = tf.LlavaOnevisionConfig(
        text_config={"model_type": "qwen2", **_text(tok, "<|im_end|>", "<|endoftext|>")},
        vision_config={"model_type": "siglip_vision_model", **siglip},
        image_token_index=ids["<image>"], video_token_index=ids["<video>"],
        image_grid_pinpoints=[[28, 28]], vision_feature_layer=-1, tie_word_embeddings=False)
    size = {"height": 28, "width": 28}
    processor = tf.LlavaOnevisionProcessor(
        image_processor=tf.LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=[[28, 28]]),
        video_processor=tf.LlavaOnevisionVideoProcessor(size=size), tokenizer=tok,
        chat_template=ONEVISION_TEMPLATE, num_image_tokens=4, vision_feature_select_strategy="full")
    return config, processor


def _internvl() -> tuple[Any, Any]:
    import transformers as tf

    named = {"start_image_token": "<img>", "end_image_token": "</img>",
             "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
    tok = _tokenizer([*CHATML, *named.values()], "<|im_end|>", "<|endoftext|>", named)
    config = tf.InternVLConfig(
        text_config={"model_type": "qwen2", **_text(tok, "<|im_end|>", "<|endoftext|>")},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": [28, 28], "patch_size": [14, 14]},
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=1,
        tie_word_embeddings=False)
    size = {"height": 28, "width": 28}
    processor = tf.InternVLProcessor(
        image_processor=tf.GotOcr2ImageProcessor(size=size, crop_to_patches=False),
        video_processor=tf.InternVLVideoProcessor(size=size), tokenizer=tok,
        chat_template=INTERNVL_TEMPLATE, image_seq_length=1)
    return config, processor


def _smolvlm() -> tuple[Any, Any]:
    import transformers as tf

    named = {"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
             "end_of_utterance_token": "<end_of_utterance>", "global_image_token": "<global-img>",
             "video_token": "<video>"}
    tok = _tokenizer(["<|endoftext|>", "<|im_start|>", *named.values()], "<end_of_utterance>",
                     "<|endoftext|>", named)
    config = tf.SmolVLMConfig(
        text_config={"model_type": "llama", **_text(tok, "<end_of_utterance>", "<|endoftext|>")},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=False)
    edge = {"longest_edge": 32}
    processor = tf.SmolVLMProcessor(
        image_processor=tf.SmolVLMImageProcessor(size=edge, max_image_size=edge,
                                                 do_image_splitting=False),
        video_processor=tf.SmolVLMVideoProcessor(size=edge, max_image_size=edge),
        tokenizer=tok, chat_template=SMOLVLM_TEMPLATE, image_seq_len=4)
    return config, processor


def _video_llama_3() -> tuple[Any, Any]:
    import transformers as tf

    tok = _tokenizer(QWEN_SPECIAL, "<|im_end|>", "<|endoftext|>")
    config = tf.VideoLlama3Config(
        text_config={"model_type": "qwen2", **_text(tok, "<|im_end|>", "<|endoftext|>")},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "patch_size": 14},
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"), tie_word_embeddings=False)
    pixels = {"min_pixels": 28 * 28, "max_pixels": 56 * 56}
    processor = tf.VideoLlama3Processor(
        image_processor=tf.VideoLlama3ImageProcessor(**pixels, patch_size=14, merge_size=1),
        video_processor=tf.VideoLlama3VideoProcessor(**pixels, patch_size=14, merge_size=2),
        tokenizer=tok, chat_template=VIDEOLLAMA3_TEMPLATE)
    return config, processor


BUILDERS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "qwen2_vl": lambda: _qwen("2"),
    "qwen2_5_vl": lambda: _qwen("2.5"),
    "qwen3_vl": lambda: _qwen("3"),
    "llava_next_video": _llava_next_video,
    "video_llava": _video_llava,
    "llava_onevision": _llava_onevision,
    "internvl": _internvl,
    "smolvlm": _smolvlm,
    "video_llama_3": _video_llama_3,
}
"""Architecture name (the config's ``model_type``) -> (config, processor) of its tiny checkpoint."""


def build_arch(arch: str, seed: int = 0) -> LoadedModel:
    """The random tiny model of family ``arch`` with its processor, in memory."""
    from transformers import AutoModelForImageTextToText

    if arch not in BUILDERS:
        raise ValueError(f"unknown --arch {arch!r}; one of {', '.join(BUILDERS)}")
    config, processor = BUILDERS[arch]()
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    tok = processor.tokenizer
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return LoadedModel(model.eval(), processor, f"tiny-{arch}", "")

