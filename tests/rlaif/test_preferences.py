"""Context-aware preferences: verdict parsing, the both-orders filter, and a run on the tiny model."""

from pathlib import Path

import numpy as np
import pytest

from videostar.config import GenerateConfig, VerifyConfig
from videostar.data.records import Record, read_records
from videostar.model import load_model
from videostar.rlaif.preferences import (
    both_orders,
    build_preferences,
    judge_pair,
    label_judge,
    narrative,
    verdict,
)

FRAMES = np.zeros((8, 32, 32, 3), dtype=np.uint8)
REC = Record(id="r", video="v.mp4", question="What is shown?", label={"object": "red circle"},
             label_type=["class"], task="action_recognition")


@pytest.mark.parametrize(("text", "expected"), [
    ("Answer 1", 1), ("I prefer answer 2.", 2), ("Answer 1 is vague; Answer 2 is right", 2),
    ("answer2", 2), ("both are fine", None), ("Answer 3", None),
])
def test_verdict(text, expected):
    assert verdict(text) == expected


def _rule_judge(word: str):
    """Prefers the answer that names ``word``; reads the answers back out of the prompt."""
    def judge(prompts, frames):
        out = []
        for p in prompts:
            first = p.split("Answer 1: ")[1].split("\n")[0]
            out.append("Answer 1" if word in first else "Answer 2")
        return out
    return judge


def test_pair_is_kept_only_when_both_orders_agree():
    winner, outputs = judge_pair(_rule_judge("red"), REC, "Clip 1: a shape.", FRAMES,
                                 "a blue circle", "a red circle")
    assert winner == 1 and outputs == ["Answer 2", "Answer 1"]
    biased = lambda prompts, frames: ["Answer 1"] * len(prompts)  # noqa: E731
    assert judge_pair(biased, REC, "", FRAMES, "a", "b")[0] is None
    mute = lambda prompts, frames: ["no idea"] * len(prompts)  # noqa: E731
    assert judge_pair(mute, REC, "", FRAMES, "a", "b")[0] is None


def test_preferences_on_the_tiny_model(tiny_base: Path, synthetic_data: Path):
    lm = load_model(str(tiny_base))
    records = [r for r in read_records(synthetic_data) if r.task == "action_recognition"][:6]
    cfg = GenerateConfig(max_new_tokens=24, temperature=1.0, batch_size=4)
    story = narrative(lm, records[0].video, cfg, num_clips=3)
    assert story.startswith("Clip 1: ") and "Clip 3: " in story
    judge_word = records[0].meta["colour"]
    pairs, counts = build_preferences(lm, records, cfg, judge=both_orders(_rule_judge(judge_word)))
    assert counts["prompts"] == 6 and not counts["video_errors"]
    assert counts["kept"] + counts["identical"] + counts["disagreed"] == 6
    assert len(pairs) == counts["kept"]
    for pair in pairs:
        assert judge_word in pair.chosen and judge_word not in pair.rejected
        assert len(pair.judge_outputs) == 2 and pair.narrative.startswith("Clip 1: ")
    _, default = build_preferences(lm, records[:2], cfg)  # the model judges itself
    assert default["prompts"] == 2
    more, counts = build_preferences(lm, records, cfg, judge=both_orders(_rule_judge(judge_word)),
                                     pairs_per_prompt=3)
    assert counts["kept"] + counts["identical"] + counts["disagreed"] == 18 == 3 * counts["prompts"]
    assert len(more) == counts["kept"] and len({(p.chosen, p.rejected) for p in more}) > len(pairs)
    assert len({p.id for p in more}) == len(more)  # the reward model's reader keeps one row per id


def test_label_judge_prefers_the_answer_holding_the_labels():
    judge = label_judge(VerifyConfig())
    winner, outputs = judge(REC, "", FRAMES, "It is a blue square.", "I see a red circle.")
    assert winner == 1 and outputs[1] == "answer 2: holds the labels"
    assert "object" in outputs[0]  # the failing label and the verifier's reason
    assert judge(REC, "", FRAMES, "a red circle", "the red circle")[0] is None  # both hold it
    assert judge(REC, "", FRAMES, "a cat", "a dog")[0] is None  # neither does
