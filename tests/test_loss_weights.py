"""Training on answer + rationale: per-token loss weights (``sft.rationale_weight``)."""

import pytest
import torch
from conftest import gradient_video

from videostar.model import conclusion_start
from videostar.star.sft import answer_loss_sum, answer_tokens
from videostar.tiny import build_random

ANSWER = "Step 1: the red circle touching the blue square (0-1 s). The answer is blue square."


@pytest.fixture(scope="module")
def lm():
    return build_random(0, step=True)


def _encode(lm, answers, weight, **kw):
    return lm.encode_training(["What?"] * len(answers), answers, [gradient_video(8, 56)] * len(answers),
                              rationale_weight=weight, **kw)


def test_conclusion_is_what_the_verifiers_read():
    assert ANSWER[conclusion_start(ANSWER):] == "blue square."
    assert conclusion_start("I see a red circle. It is red.") == len("I see a red circle. ")
    assert conclusion_start("") == 0


def test_rationale_tokens_carry_the_weight_answer_tokens_one(lm):
    batch = _encode(lm, [ANSWER, "blue"], 0.25)
    weights, labels = batch["loss_weights"], batch["labels"]
    assert weights.shape == labels.shape
    assert bool((weights[labels == -100] == 0).all())  # prompt and padding: no loss
    row, lab = weights[0], labels[0]
    answer_ids = lab[(lab != -100) & (row == 1)]
    assert lm.tokenizer.decode(answer_ids) == " blue square.<|im_end|>"
    assert lm.tokenizer.decode(lab[row == 0.25]) == ANSWER[: ANSWER.rindex(" blue square.")]
    assert bool((weights[1][labels[1] != -100] == 1).all())  # no rationale: all answer


def test_equal_weight_is_the_plain_token_mean(lm):
    batch = _encode(lm, [ANSWER, "a red circle"], 1.0)
    weights, labels = batch.pop("loss_weights"), batch.pop("labels")
    with torch.no_grad():
        logits = lm.model(**batch).logits
    plain = answer_loss_sum(logits, labels) / answer_tokens(labels)
    weighted = answer_loss_sum(logits, labels, weights) / answer_tokens(labels, weights)
    assert float(weighted) == pytest.approx(float(plain), rel=1e-6)


def test_zero_weight_trains_on_the_final_answer_only(lm):
    batch = _encode(lm, [ANSWER], 0.0)
    weights, labels = batch.pop("loss_weights"), batch.pop("labels")
    with torch.no_grad():
        logits = lm.model(**batch).logits
    only_answer = labels.clone()
    only_answer[weights == 0] = -100
    expected = answer_loss_sum(logits, only_answer) / answer_tokens(only_answer)
    got = answer_loss_sum(logits, labels, weights) / answer_tokens(labels, weights)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    assert answer_tokens(labels, weights) == answer_tokens(only_answer) < answer_tokens(labels)


def test_a_cut_answer_keeps_its_weights_aligned(lm):
    full = _encode(lm, [ANSWER], 0.5)
    n_prompt = int((full["labels"][0] == -100).sum())
    cut = _encode(lm, [ANSWER], 0.5, max_length=n_prompt + 3, clipped=[])
    assert cut["loss_weights"].shape == cut["labels"].shape
    assert torch.equal(cut["loss_weights"][0], full["loss_weights"][0][: n_prompt + 3])
