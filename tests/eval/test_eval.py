"""Evaluation suites: official scoring rules, metrics against hand values and scipy, and an
evaluation of the tiny model per suite on fixtures written in the benchmarks' real formats."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import gradient_video
from finediving_release import _dump, _frames
from scipy import stats

from videostar.cli import main
from videostar.config import GenerateConfig, VerifyConfig, VideoConfig
from videostar.data.records import Record, read_rows
from videostar.errors import RecordError, VideostarError
from videostar.eval.finediving import (
    average_ranks,
    evaluate_finediving,
    parse_score,
    relative_l2,
    score_finediving,
    spearman,
)
from videostar.eval.kinetics_qa import evaluate_kinetics, mean_class_accuracy, score_kinetics
from videostar.eval.report import Accuracy, print_report, tally
from videostar.eval.tempcompass import (
    Question,
    evaluate_tempcompass,
    load_tempcompass,
    rate,
    rule_rating,
    score_predictions,
)
from videostar.video import write_video

GEN = GenerateConfig(temperature=0.0, max_new_tokens=12, batch_size=4)
VIDEO = VideoConfig(num_frames=8)
VERIFY = VerifyConfig()

# --- TempCompass rules ----------------------------------------------------------------------

MC_Q = "What is the man doing?\nA. dunking a basketball\nB. dribbling a basketball\nC. passing a basketball"
MC_A = "B. dribbling a basketball"


@pytest.mark.parametrize(("prediction", "expected"), [
    ("B. dribbling a basketball", True),  # the whole answer line
    ("B", True),
    ("A", False),
    ("B. text that is not the option", True),  # "X." prefix: the letter decides
    ("C. passing a basketball", False),
    ("B) dribbling", True),
    ("D)", False),
    (" B ", True),  # surrounding whitespace is stripped, as officially
    ("B</s>", True),  # and the end-of-sequence token removed
    ("B.", True),
    ("E", None),  # only A-D are letters
    ("E. something", None),
    ("(B)", None),  # no official rule takes a parenthesised letter
    ("The answer is B", None),
    ("b", None),  # letters are case-sensitive in the official rules
    ("dribbling a basketball", None),  # the option text alone matches no multi-choice rule
    ("", None),
])
def test_multi_choice_rules(prediction, expected):
    assert rule_rating("multi-choice", MC_Q, MC_A, prediction) is expected


@pytest.mark.parametrize(("prediction", "answer", "expected"), [
    ("yes", "yes", True),
    ("Yes, the man is dunking.", "yes", True),
    ("YES", "no", False),
    ("No.", "no", True),
    ("no", "yes", False),
    ("Nope", "no", True),  # starts with "no": the official rule reads it as no
    ("I think yes", "yes", None),
    ("It is not", "no", None),
    ("Yes", "Yes", False),  # the ground truth is compared as written (the files use lowercase)
    ("Not really.", "no", True),
])
def test_yes_no_rules(prediction, answer, expected):
    assert rule_rating("yes_no", "Is the man dunking?", answer, prediction) is expected


def _cm_question(header: str, ids: tuple[str, str], intro: str) -> tuple[str, str]:
    """A caption-matching question in one header style, and its answer (the second option)."""
    lines = [f"{header} {ids[0]}: The man walks left.", f"{header} {ids[1]}: The man walks right."]
    return "\n".join([intro, *lines]), lines[1]


CM_STYLES = {  # the three header styles of the official question file, each with its own intro
    "Caption": _cm_question("Caption", ("A", "B"), "Which caption matches the video better?"),
    "Sentence": _cm_question("Sentence", ("A", "B"),
                             "Which sentence better captures the essence of the video?"),
    "Option": _cm_question("Option", ("1", "2"),
                           "Which description is a more suitable match for the video?"),
}
CM_IDS = {"Caption": ("A", "B"), "Sentence": ("A", "B"), "Option": ("1", "2")}
CM_FORMS = [  # (form, expected): {h} header word, {w} wrong index, {r} right index
    ("{h} {r}: The man walks right.", True),  # the whole option line
    ("{h} {w}: The man walks left.", False),
    ("The man walks right.", True),  # the option sentence alone
    ("The man walks left.", False),
    ("({r}) The man walks right.", True),  # the sentence after an "X) " prefix
    ("{r}) The man walks right.", True),
    ("({w}) The man walks left.", False),
    ("{h} {r}", True),  # the index with its header
    ("{h} {r}.", True),  # ... every "." removed first
    ("{h} {w}", False),
    ("{h} {w}.", False),
    ("{r}", True),  # the bare index
    ("{r}.", True),
    ("{w}", False),
    ("{w}.", False),
    ("  {h} {r}\n</s>", True),  # "</s>" removed and whitespace stripped, as officially
    ("({r})", None),  # rejected forms: no rule takes these
    ("{r})", None),
    ("{r}. The man walks right.", None),  # "." removal leaves "{r} The man walks right"
    ("{h} {r}: The man walks", None),  # a cut sentence
    ("The answer is {h} {r}", None),
    ("{h} {r} is the better match.", None),
    ("{h}{r}", None),
    ("the man walks right.", None),  # case-sensitive
    ("", None),
]


@pytest.mark.parametrize("style", sorted(CM_STYLES))
@pytest.mark.parametrize(("form", "expected"), CM_FORMS)
def test_caption_matching_rules(style, form, expected):
    question, answer = CM_STYLES[style]
    wrong, right = CM_IDS[style]
    prediction = form.format(h=style, w=wrong, r=right)
    if style == "Option" and form == "{h} {r}: The man walks":
        prediction = "Option 2: The man walks"
    assert rule_rating("caption_matching", question, answer, prediction) is expected


def test_caption_matching_rules_follow_the_official_quirks():
    question, answer = CM_STYLES["Caption"]
    # the piece after the first ") " only (the official ``split(') ')[1]``)
    odd = question.replace("The man walks right.", "The man (left) walks right.")
    odd_answer = "Caption B: The man (left) walks right."
    assert rule_rating("caption_matching", odd, odd_answer, "B) The man (left) walks right.") is None
    # a line without ": " offers no option (the official script would crash on it)
    assert rule_rating("caption_matching", question + "\n(none of these)", answer, "B") is True


class RecordingJudge:
    def __init__(self, verdict: bool | None):
        self.verdict = verdict
        self.calls: list[tuple[str, str, str, str]] = []

    def __call__(self, task: str, question: str, answer: str, prediction: str) -> bool | None:
        self.calls.append((task, question, answer, prediction))
        return self.verdict


def test_judge_is_a_fallback_and_scores_captions_against_the_multi_choice_question():
    mc = Question("multi-choice", "v1", "action", 0, MC_Q, MC_A)
    cap = Question("captioning", "v1", "action", 0, "Info...\nGenerated Caption:", "B. dribbling")
    judge = RecordingJudge(True)
    assert rate(mc, "B", judge) == (True, "rule") and judge.calls == []
    assert rate(mc, "(B)", judge) == (True, "judge")
    assert judge.calls[-1] == ("multi-choice", MC_Q, MC_A, "(B)")
    assert rate(cap, "A man dribbles.", judge, mc) == (True, "judge")
    assert judge.calls[-1] == ("captioning", MC_Q, MC_A, "A man dribbles.")
    assert rate(cap, "A man dribbles.") == (None, "unscored")
    assert rate(mc, "(B)", RecordingJudge(None)) == (None, "unscored")


def test_null_prediction_is_a_refusal_rated_wrong_without_the_judge():
    judge = RecordingJudge(True)
    mc = Question("multi-choice", "v1", "action", 0, MC_Q, MC_A)
    assert rate(mc, None, judge) == (False, "refusal") and judge.calls == []


def _official_predictions(root: Path) -> Path:
    """predictions/<model>/<task>.json as published: the question file plus a prediction."""
    model = root / "predictions" / "some-vlm"
    files = {
        "multi-choice": {"v1": {"action": [
            {"question": MC_Q, "answer": MC_A, "prediction": "B</s>"},  # right
            {"question": MC_Q, "answer": "A. dunking a basketball", "prediction": "(A)"},  # unscored
        ], "direction": [
            {"question": "Which way?\nA. left\nB. right", "answer": "A. left", "prediction": None},
        ]}},
        "yes_no": {"v1": {"action": [
            {"question": "Is he dribbling?", "answer": "yes", "response": "No, he is not."},  # wrong
            {"question": "Is he dunking?", "answer": "no"},  # malformed: no prediction key
            {"question": "Is he walking?", "answer": "no", "prediction": 3},  # malformed
        ]}},
        "caption_matching": {"v1": {"direction": [
            {"question": CM_STYLES["Option"][0], "answer": CM_STYLES["Option"][1], "prediction": "2."},
            {"question": CM_STYLES["Sentence"][0], "answer": CM_STYLES["Sentence"][1], "prediction": "A"},
        ]}},
    }
    for task, data in files.items():
        model.mkdir(parents=True, exist_ok=True)
        (model / f"{task}.json").write_text(json.dumps(data, indent=4))
    return model


def test_scoring_only_mode_scores_an_official_predictions_folder(tmp_path, capsys):
    model = _official_predictions(tmp_path)
    (tmp_path / "meta_info.json").write_text(json.dumps(TC_META))
    out = tmp_path / "scored"
    code = main(["eval", "tempcompass", "--predictions", str(model), "--data", str(tmp_path),
                 "--out", str(out)])
    assert code == 0 and "some-vlm" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "some-vlm" and report["settings"] == {"scoring_only": True}
    counts = report["counts"]
    assert (counts["items"], counts["scored"], counts["unscored"], counts["correct"]) == (6, 5, 1, 2)
    assert counts["scored_by_refusal"] == 1 and counts["scored_by_rule"] == 4
    assert report["summary"]["accuracy/caption_matching"] == 0.5
    assert report["summary"]["accuracy_unscored_wrong"] == 2 / 6
    assert [e.split(": ", 1)[1] for e in report["input_errors"]] == [
        "v1/action[1]: needs a 'prediction' (or 'response'): text, or null for a refusal",
        "v1/action[2]: needs a 'prediction' (or 'response'): text, or null for a refusal"]
    rows = {r["id"]: r for r in read_rows(out / "scored.jsonl")}
    assert rows["tempcompass/multi-choice/v1/direction/0"]["scored_by"] == "refusal"
    assert rows["tempcompass/yes_no/v1/action/0"]["rating"] is False  # from the "response" key
    fine = report["breakdowns"]["per_task_fine_dimension"]["multi-choice"]
    assert fine["fine-grained action"]["total"] == 2
    # no model and no predictions: a clear usage error, exit 2
    assert main(["eval", "tempcompass", "--out", str(out)]) == 2
    assert "--predictions" in capsys.readouterr().err


# --- TempCompass files ----------------------------------------------------------------------

TC_QUESTIONS = {
    "multi-choice": {
        "v1": {"action": [{"question": MC_Q, "answer": MC_A},
                          {"question": MC_Q, "answer": "A. dunking a basketball"}],
               "direction": [{"question": "Which way?\nA. left\nB. right", "answer": "A. left"}]},
        "v2": {"speed": [{"question": "How fast?\nA. slow motion\nB. normal", "answer": "A. slow motion"}]},
    },
    "yes_no": {
        "v1": {"action": [{"question": "Is the man dribbling a basketball?", "answer": "yes"}],
               "speed": [{"question": "Is it slow?"}]},  # malformed: no answer
        "v3": {"order": [{"question": "Does he jump first?", "answer": "no"}]},
    },
    "caption_matching": {"v1_reverse": {"direction": [{"question": CM_STYLES["Caption"][0],
                                                       "answer": CM_STYLES["Caption"][1]}]}},
    "captioning": {"v1": {"action": [{"question": "Information A: ...\nGenerated Caption:",
                                      "answer": "B. dribbling a basketball"}]}},
}
TC_META = {
    "v1": {"eval_dim": {"action": {"subject": "man", "action": "dribbling", "type": "fine-grained action"},
                        "direction": {"subject": "man", "direction": "left", "type": "object motion"},
                        "speed": None, "order": None, "attribute_change": None}, "content": ["people"]},
    "v1_reverse": {"eval_dim": {"direction": {"subject": "man", "direction": "right",
                                              "type": "object motion"}}, "content": ["people"]},
}


@pytest.fixture
def tempcompass(tmp_path: Path) -> Path:
    root = tmp_path / "TempCompass"
    for task, data in TC_QUESTIONS.items():
        path = root / "questions" / f"{task}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=4))
    (root / "meta_info.json").write_text(json.dumps(TC_META, indent=4))
    write_video(root / "videos" / "v1.mp4", gradient_video(16, 32))
    write_video(root / "videos" / "v1_reverse.mp4", gradient_video(16, 32)[::-1].copy())
    (root / "videos" / "v2.mp4").write_bytes(b"not an mp4 at all")  # corrupt; v3 is missing
    return root


def test_load_tempcompass(tempcompass):
    data = load_tempcompass(tempcompass)
    assert len(data.questions) == 8
    assert data.errors == [f"{tempcompass / 'questions/yes_no.json'}: v1/speed[0]: "
                           "needs text 'question' and 'answer'"]
    first = data.questions[0]
    assert first.id == "tempcompass/multi-choice/v1/action/0"
    assert first.fine_dimension == "fine-grained action"
    assert data.multi_choice[("v1", "action")].answer == MC_A  # the first one, as officially
    only = load_tempcompass(tempcompass, ["yes_no"])
    assert {q.task for q in only.questions} == {"yes_no"}
    with pytest.raises(RecordError, match="unknown TempCompass task 'mcq'"):
        load_tempcompass(tempcompass, ["mcq"])
    (tempcompass / "questions" / "captioning.json").unlink()
    with pytest.raises(RecordError, match=r"captioning\.json: question file not found"):
        load_tempcompass(tempcompass, ["captioning"])
    with pytest.raises(RecordError, match="no TempCompass question files"):
        load_tempcompass(tempcompass / "nowhere")


# --- FineDiving metrics ---------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "expected"), [
    ("The dive earns a score of 81.6.", 81.6),
    ("Difficulty 3.4, score: 75", 75.0),
    ("Score 70. The difficulty is 3.2.", 70.0),  # the number after "score", not the last one
    ("It could score 85 with a cleaner entry; it scored 72.5 in the end.", 72.5),
    ("The score is high. Final: 88", 88.0),
    ("I would give it 65.5 points, difficulty 2.0", 2.0),  # no "score": the last number
    ("A total score of 1,234.5", 1234.5),
    ("A forward dive with a clean entry.", None),
    ("", None),
])
def test_parse_score(answer, expected):
    assert parse_score(answer) == expected


def test_spearman_by_hand_and_against_scipy():
    assert average_ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6*2 / (4*15)
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / np.sqrt(3))  # ranks 1.5,1.5,3
    assert spearman([3, 2, 1], [1, 2, 3]) == pytest.approx(-1.0)
    assert spearman([5, 5, 5], [1, 2, 3]) is None  # undefined; scipy says nan
    assert spearman([1], [2]) is None
    rng = np.random.default_rng(0)
    for n in (2, 3, 7, 40):
        pred, true = rng.integers(0, 4, n), rng.normal(70, 10, n).round(0)  # many ties
        if len(set(pred)) > 1 and len(set(true)) > 1:
            assert spearman(pred, true) == pytest.approx(stats.spearmanr(pred, true).statistic)
        true = rng.integers(0, 3, n)
        if len(set(pred)) > 1 and len(set(true)) > 1:
            assert spearman(pred, true) == pytest.approx(stats.spearmanr(pred, true).statistic)


def test_relative_l2():
    # range of the true scores 50; every error 10 -> (10/50)^2 = 0.04
    assert relative_l2([80, 60, 90], [70, 50, 100]) == pytest.approx(0.04)
    pred, true = np.array([55.0, 80.5, 61.0, 99.0]), np.array([50.0, 85.0, 70.0, 90.0])
    by_hand = np.mean((np.abs(pred - true) / 40.0) ** 2)
    assert relative_l2(pred, true) == pytest.approx(by_hand)
    assert relative_l2([1, 2], [70, 70]) is None
    assert relative_l2([], []) is None
    with pytest.raises(ValueError):
        relative_l2([1], [1, 2])


def _dive(i: int, score: float, moves: list[str]) -> Record:
    return Record(id=f"finediving/e/{i}", video="x", question="q",
                  label={"sub_actions": moves, "difficulty": 3.0, "score": score},
                  label_type=["sequence", "float", "float"], task="dive_quality")


def test_score_finediving_counts_unparseable_answers():
    moves = ["Forward", "2.5 Soms.Pike", "Entry"]
    records = [_dive(i, s, moves) for i, s in enumerate([60.0, 70.0, 80.0, 90.0])]
    answers = {
        "finediving/e/0": "Forward, then 2.5 Soms.Pike, then Entry. Difficulty 3.0, score 65.",
        "finediving/e/1": "Entry then Forward. Score 60.",
        "finediving/e/2": "A clean dive.",
    }  # e/3 has no answer (unreadable video): not scored at all
    rows, metrics, breakdowns = score_finediving(records, answers, VERIFY)
    assert [r["predicted_score"] for r in rows] == [65.0, 60.0, None]
    assert metrics["parsed"] == 2 and metrics["unparseable"] == 1
    assert metrics["unparseable_ids"] == ["finediving/e/2"]
    assert metrics["spearman"] == pytest.approx(-1.0)
    assert metrics["relative_l2_x100"] == pytest.approx(100 * ((5 / 10) ** 2 + (10 / 10) ** 2) / 2)
    seq = breakdowns["sub_action_sequence"]["all"]
    assert (seq["correct"], seq["scored"], seq["accuracy"]) == (1, 3, pytest.approx(1 / 3))
    assert breakdowns["difficulty"]["all"]["correct"] == 1


# --- Kinetics and shared tallies ------------------------------------------------------------


def test_score_kinetics_per_class():
    def rec(i, label):
        return Record(id=f"k/{i}", video="x", question="q", label={"action": label},
                      label_type=["class"], task="action_recognition")

    records = [rec(0, "abseiling"), rec(1, "abseiling"), rec(2, "passing American football (in game)"),
               rec(3, "dancing ballet")]
    answers = {"k/0": "A person is abseiling down a cliff.", "k/1": "Someone climbs.",
               "k/2": "Players are passing an american football during a game."}
    rows, breakdowns = score_kinetics(records, answers, VERIFY)
    assert [r["rating"] for r in rows] == [True, False, True]
    per_class = breakdowns["per_class"]
    assert list(per_class) == ["abseiling", "passing American football (in game)"]
    assert per_class["abseiling"]["accuracy"] == 0.5
    assert breakdowns["overall"]["all"]["accuracy"] == pytest.approx(2 / 3)
    assert mean_class_accuracy(per_class) == pytest.approx(0.75)


def test_accuracy_tally():
    acc = Accuracy()
    for rating in (True, False, None, True):
        acc.add(rating)
    assert acc.to_json() == {"total": 4, "scored": 3, "correct": 2, "unscored": 1,
                             "accuracy": 2 / 3, "accuracy_unscored_wrong": 0.5}
    assert Accuracy().to_json()["accuracy"] is None
    assert list(tally([("b", True), ("z", None), ("a", False)], order=["z"])) == ["z", "a", "b"]


# --- the tiny model, end to end -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm(tiny_base: Path):
    from videostar.model import load_model

    return load_model(str(tiny_base), device="cpu")


def _check_common(report: dict, out: Path, suite: str) -> None:
    assert report["suite"] == suite
    assert json.loads((out / "report.json").read_text()) == report
    counts = report["counts"]
    assert counts["answered"] + counts["video_errors"] == counts["items"]
    assert len(report["video_errors"]) == counts["video_errors"]
    assert len(read_rows(out / "predictions.jsonl")) == counts["answered"]
    assert len(read_rows(out / "scored.jsonl")) == counts["answered"]
    assert report["files"]["predictions"] == str(out / "predictions.jsonl")


def test_tempcompass_end_to_end(tiny_lm, tempcompass, tmp_path):
    out = tmp_path / "eval"
    report = evaluate_tempcompass(tiny_lm, tempcompass, out, GEN, VIDEO, progress=False)
    _check_common(report, out, "tempcompass")
    counts = report["counts"]
    assert (counts["items"], counts["answered"], counts["video_errors"]) == (8, 6, 2)
    assert {e["id"] for e in report["video_errors"]} == {
        "tempcompass/multi-choice/v2/speed/0", "tempcompass/yes_no/v3/order/0"}
    assert counts["scored"] + counts["unscored"] == 6 and counts["scored_by_judge"] == 0
    assert len(report["input_errors"]) == 1
    per_task = report["breakdowns"]["per_task"]
    assert list(per_task) == ["multi-choice", "yes_no", "caption_matching", "captioning"]
    assert per_task["captioning"]["unscored"] == 1  # no judge: captions cannot be scored
    assert set(report["breakdowns"]["per_task_dimension"]["multi-choice"]) == {"action", "direction"}
    assert report["breakdowns"]["per_task_fine_dimension"]["multi-choice"]["object motion"]["total"] == 1
    # the official prediction layout: the question files plus "prediction" (null: unreadable video)
    mirror = json.loads((out / "predictions" / "multi-choice.json").read_text())
    assert set(mirror) == {"v1", "v2"} and mirror["v2"]["speed"][0]["prediction"] is None
    assert all(isinstance(p["prediction"], str) for p in mirror["v1"]["action"])
    assert mirror["v1"]["action"][1]["answer"] == "A. dunking a basketball"
    assert set(report["files"]["predictions_by_task"]) == set(TC_QUESTIONS)
    # the files score alike without the model; their nulls (unreadable videos) are refusals
    rescored = score_predictions(out / "predictions", tmp_path / "rescored")
    assert rescored["counts"]["correct"] == counts["correct"]
    assert rescored["counts"]["scored_by_refusal"] == counts["video_errors"]

    # a judge rescored run reuses the answers and leaves nothing unscored
    judge = RecordingJudge(False)
    again = evaluate_tempcompass(tiny_lm, tempcompass, out, GEN, VIDEO, judge=judge, progress=False)
    assert again["settings"]["generated_now"] == 0 and again["settings"]["reused_answers"] == 6
    assert again["counts"]["unscored"] == 0
    assert again["counts"]["scored_by_judge"] == counts["unscored"] == len(judge.calls)
    print(json.dumps({k: report[k] for k in ("counts", "summary")}, indent=1))
    # answers of another model (or settings) are never mixed into one report
    with pytest.raises(VideostarError, match="another model or other generation settings"):
        evaluate_tempcompass(tiny_lm, tempcompass, out, GenerateConfig(temperature=0.0, max_new_tokens=5),
                             VIDEO, progress=False)


K700_EVAL_CSV = """label,youtube_id,time_start,time_end,split
abseiling,ab1,0,10,validate
abseiling,ab2,10,20,validate
"passing American football (in game)",fb1,14,24,validate
"dancing ballet",db1,3,13,validate
"dancing ballet",bad1,0,10,validate
"dancing ballet",gone1,0,10,validate
"dancing ballet",tr1,0,10,train
"""


@pytest.fixture
def kinetics_eval(tmp_path):
    """A validate.csv in the official format with four good clips, a corrupt one and a missing one."""
    csv_path = tmp_path / "validate.csv"
    csv_path.write_text(K700_EVAL_CSV)
    root = tmp_path / "k700"
    for name in ("ab1_000000_000010", "ab2_000010_000020", "fb1_000014_000024", "db1_000003_000013",
                 "tr1_000000_000010"):
        write_video(root / f"{name}.mp4", gradient_video(16, 32))
    (root / "bad1_000000_000010.mp4").write_bytes(b"\x00" * 64)
    return csv_path, root


def test_kinetics_eval_from_the_cli(tiny_base, kinetics_eval, tmp_path, capsys):
    csv_path, root = kinetics_eval
    args = ["eval", "kinetics700", "--model", str(tiny_base), "--csv", str(csv_path), "--videos",
            str(root), "--split", "validate", "--out", str(tmp_path / "eval"), "--limit", "3"]
    assert main(args) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["suite"] == "kinetics700" and report["counts"]["items"] == 3
    assert report["settings"]["generate"]["temperature"] == 0.0
    assert "accuracy" in capsys.readouterr().out


def test_kinetics_end_to_end(tiny_lm, kinetics_eval, tmp_path):
    csv_path, root = kinetics_eval
    out = tmp_path / "eval"
    report = evaluate_kinetics(tiny_lm, csv_path, root, out, GEN, VIDEO, VERIFY, split="validate",
                               progress=False)
    _check_common(report, out, "kinetics700")
    counts = report["counts"]
    assert (counts["items"], counts["answered"], counts["video_errors"]) == (5, 4, 1)
    assert counts["missing_videos"] == 1 and "gone1_000000_000010.mp4" in report["input_errors"][0]
    per_class = report["breakdowns"]["per_class"]
    assert sum(c["total"] for c in per_class.values()) == 4
    assert set(per_class) <= {"abseiling", "passing American football (in game)", "dancing ballet"}
    assert report["breakdowns"]["overall"]["all"]["unscored"] == 0
    assert report["summary"]["accuracy"] is not None
    print(json.dumps({k: report[k] for k in ("counts", "summary")}, indent=1))


@pytest.fixture
def finediving_eval(finediving: dict) -> dict:  # noqa: F811
    """The adapter fixture plus three dives of another event; the last one has a corrupt frame."""
    def load(key):
        with open(finediving[key], "rb") as fh:
            return pickle.load(fh)  # our own test file

    coarse, fine, split = load("coarse_pkl"), load("fine_pkl"), load("split_pkl")
    for k, score in enumerate((40.5, 66.0, 90.0)):
        key = ("03", k)
        coarse[key] = {**coarse[("01", 1)], "dive_score": score, "start_frame": 0, "end_frame": 5}
        fine[key] = {**fine[("01", 1)], "dive_score": np.float64(score)}
        split.append(key)
        _frames(finediving["frames"] / "03" / str(k), range(0, 6))
    (finediving["frames"] / "03" / "2" / "00003.jpg").write_bytes(b"not a jpeg")
    _dump(finediving["coarse_pkl"], coarse)
    _dump(finediving["fine_pkl"], fine, protocol=5)
    _dump(finediving["split_pkl"], split)
    return finediving


def test_finediving_end_to_end(tiny_lm, finediving_eval, tmp_path):
    fx = finediving_eval
    out = tmp_path / "eval"
    report = evaluate_finediving(tiny_lm, fx["root"], fx["coarse_pkl"], fx["fine_pkl"], fx["split_pkl"],
                                 fx["subaction_table_pkl"], out, GEN, VIDEO, VERIFY, progress=False)
    _check_common(report, out, "finediving")
    counts = report["counts"]
    assert (counts["items"], counts["answered"], counts["video_errors"]) == (5, 4, 1)
    assert report["video_errors"][0]["id"] == "finediving/03/2"
    assert (counts["missing_videos"], counts["malformed_dives"]) == (2, 2)
    assert counts["parsed_scores"] + counts["unparseable_scores"] == 4
    assert len(report["details"]["unparseable_ids"]) == counts["unparseable_scores"]
    assert set(report["summary"]) >= {"spearman", "relative_l2_x100", "sub_action_sequence_accuracy"}
    assert report["breakdowns"]["sub_action_sequence"]["all"]["scored"] == 4
    print(json.dumps({k: report[k] for k in ("counts", "summary")}, indent=1))

    from rich.console import Console

    console = Console(record=True, width=120)
    print_report(report, console)
    text = console.export_text()
    assert "finediving" in text and "sub_action_sequence" in text
