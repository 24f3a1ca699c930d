"""Per-token loss weights of a training answer: its rationale vs its final answer (STEP trains
on both, with the rationale's weight in config, ``sft.rationale_weight``).

The final answer is what ``final_answer`` reads as the conclusion (after the last "answer is",
else the last sentence), the very span the verifiers judge; everything before it is rationale.
The end-of-turn token counts as answer: stopping is part of answering.
"""

from __future__ import annotations

from typing import Any

import torch

from videostar.errors import VideostarError
from videostar.verify.text import final_answer


def conclusion_start(answer: str) -> int:
    """Character offset where the answer's conclusion starts (``len(answer)``: none)."""
    final = final_answer(answer).strip()
    at = answer.rfind(final) if final else -1
    return at if at >= 0 else len(answer)


def answer_token_weights(tokenizer: Any, answer: str, n_tokens: int, rationale_weight: float
                         ) -> torch.Tensor:
    """``(1, n_tokens)`` weights for the tokens of ``answer`` + end-of-turn (as encoded for
    training): ``rationale_weight`` on tokens that end before the conclusion, 1 on the rest."""
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
