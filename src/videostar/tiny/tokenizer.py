"""The tiny checkpoints' tokenizer: a byte-level BPE trained on the prompts' own vocabulary."""

from __future__ import annotations

from typing import Any

from videostar.data.synthetic import COLOURS, SHAPES

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

def _corpus(templates: dict[str, list[str]]) -> list[str]:
    words = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    text = [q for qs in templates.values() for q in qs]
    if any(task.startswith("step_") for task in templates):  # STEP's rationale vocabulary
        text += [f"Step {n}: the {w} touching the {v} moving past leaves the view ({n}.25-{n}.5 s)."
                  for n in range(1, 7) for w in words for v in words[:3]]
    text += [f"I see a {w} on a dark background. The answer is a {w}." for w in words]
    text += [f"Its score is {n}. from {a:.2f} to {b:.2f} of the video." for n in range(100)
             for a, b in ((0, 0.5), (0.25, 0.75))]
    text += ["Explain step by step. Answer: how one arrives at this. visible drawn well"]
    return text


def build_tokenizer(
    templates: dict[str, list[str]], special: list[str] = SPECIAL_TOKENS, eos: str = "<|im_end|>",
    pad: str = "<|endoftext|>", named: dict[str, str] | None = None,
) -> Any:
    """A 1024-token byte-level BPE trained here in well under a second (any text encodes).

    ``special`` are the family's special tokens; ``named`` exposes some as tokenizer attributes
    (``tok.video_token``, ``tok.video_token_id``) as a family's processor expects them.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(templates) * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad,
                                   extra_special_tokens=named or {})
