"""Verifier throughput: our ``verify_record`` against the released verifier's own method.

The baseline is the release's matching: fuzzywuzzy's ``fuzz.ratio`` (pure-Python path:
``round(100 * difflib ratio)``) of every label word against every answer word, ``> 85``, with
spaCy-free tokenization; floats accept any number within tolerance. Ours matches words with
rapidfuzz (``process.extractOne`` with ``score_cutoff``), and class labels that have siblings
in the class list (the Kinetics adapter records them) must also be told apart from them.

Synthetic answers come from a seeded RNG: filler words drawn Zipf-like from a vocabulary, plus
Kinetics class labels (verbatim, with a typo, or a wrong label), dive scores and temporal
ranges. Generation is not timed. The baseline is slow, so it runs on the first
``--baseline-n`` answers only; ours is timed on those same answers and on all ``--n``.
Class decisions are compared on the labels without siblings, where both apply the release's
rule; on labels with siblings the number of answers we reject and the release accepts is
reported.

    python bench/bench_verify.py --n 1000000 --baseline-n 50000
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Iterator
from difflib import SequenceMatcher
from typing import Any

from videostar import verify as V
from videostar.config import VerifyConfig
from videostar.data.records import SIBLINGS, Record, write_json

try:
    from tqdm import tqdm
except ImportError:  # progress is optional
    tqdm = None

KINETICS_LABELS = [
    "passing American football (in game)", "passing American football (not in game)",
    "massaging person's head", "playing bagpipes", "riding mechanical bull", "tying bow tie",
    "dribbling basketball", "shooting basketball", "playing ice hockey", "ice skating",
    "making tea", "making a sandwich", "brushing teeth", "cleaning windows", "washing dishes",
    "walking the dog", "riding a bike", "riding unicycle", "juggling balls", "tai chi",
    "archery", "bowling", "headbanging", "high jump", "long jump", "triple jump",
    "pole vault", "surfing water", "snowboarding", "skiing (not slalom or crosscountry)",
    "playing guitar", "playing violin", "playing drums", "playing piano", "singing",
    "dancing ballet", "salsa dancing", "breakdancing", "doing aerobics", "doing nails",
    "applying cream", "shaving head", "cutting watermelon", "peeling apples", "baking cookies",
    "frying vegetables", "scrambling eggs", "flipping pancake", "opening present",
    "wrapping present", "blowing out candles", "arm wrestling", "rock climbing",
    "swimming backstroke", "diving cliff", "bungee jumping", "paragliding", "kitesurfing",
    "milking cow", "feeding goats", "grooming horse", "walking on stilts", "yo yoing",
    "Rubik's cube", "solving crossword puzzle", "reading book", "texting", "knitting",
]
_FILLER_TEXT = """
    the a video shows person man woman someone is are in on at with of and then while
    camera scene clip outdoor indoor room street field stage crowd people player team
    moving standing holding looking using wearing hand hands arm body head face slowly
    quickly first next finally after before during appears seems likely clearly activity
    action motion background foreground light dark bright colorful small large several
    game sport music water table floor ground tree grass snow ice house car road ball
    step explain because therefore which this that these those there here what where
    scored points judges difficulty dive board pool jump twist entry splash somersault
"""
FILLER = _FILLER_TEXT.split()
WEIGHTS = [1 / (rank + 1) ** 0.8 for rank in range(len(FILLER))]
CLASS_SIBLINGS = V.class_siblings(KINETICS_LABELS)


def typo(text: str, rng: random.Random) -> str:
    """Drop one character of one long word, as a model's near-miss spelling."""
    words = text.split()
    longs = [i for i, w in enumerate(words) if len(w) > 5]
    if not longs:
        return text
    i = rng.choice(longs)
    k = rng.randrange(1, len(words[i]) - 1)
    words[i] = words[i][:k] + words[i][k + 1 :]
    return " ".join(words)


def filler(rng: random.Random) -> list[str]:
    return rng.choices(FILLER, weights=WEIGHTS, k=rng.randint(20, 60))


def make_class(i: int, rng: random.Random) -> tuple[Record, str]:
    label = rng.choice(KINETICS_LABELS)
    roll = rng.random()
    said = label if roll < 0.5 else typo(label, rng) if roll < 0.7 else rng.choice(KINETICS_LABELS)
    words = filler(rng)
    words.insert(rng.randrange(len(words) + 1), said + ".")
    meta = {SIBLINGS: {"action": CLASS_SIBLINGS[label]}} if label in CLASS_SIBLINGS else {}
    rec = Record(id=f"c{i}", video=f"c{i}.mp4", question="What is happening?",
                 label={"action": label}, label_type=["class"], task="action_recognition", meta=meta)
    return rec, " ".join(words).capitalize()


def make_float(i: int, rng: random.Random) -> tuple[Record, str]:
    score = round(rng.uniform(20, 100), 1)
    said = round(score * rng.uniform(0.8, 1.2), 1)
    words = filler(rng)
    words.insert(rng.randrange(len(words) + 1), f"the difficulty is {rng.uniform(1.5, 4):.1f}")
    words.insert(rng.randrange(len(words) + 1), f"so the score is {said}.")
    rec = Record(id=f"f{i}", video=f"f{i}.mp4", question="Score this dive.",
                 label={"score": score}, label_type=["float"], task="dive_quality")
    return rec, " ".join(words).capitalize()


def make_range(i: int, rng: random.Random) -> tuple[Record, str]:
    start = round(rng.uniform(0, 0.7), 2)
    end = round(min(1.0, start + rng.uniform(0.05, 0.3)), 2)
    a, b = (round(min(1.0, max(0.0, x + rng.uniform(-0.1, 0.1))), 2) for x in (start, end))
    words = filler(rng)
    words.insert(rng.randrange(len(words) + 1), f"it happens from {a} to {b} of the video.")
    rec = Record(id=f"r{i}", video=f"r{i}.mp4", question="When does it happen?",
                 label={"when": [start, end]}, label_type=["temporal_range"],
                 task="temporal_localization")
    return rec, " ".join(words).capitalize()


def synthetic(n: int, seed: int) -> Iterator[tuple[Record, str]]:
    """60 % class, 20 % float, 20 % temporal_range answers, reproducible from the seed."""
    rng = random.Random(seed)
    for i in range(n):
        roll = rng.random()
        make = make_class if roll < 0.6 else make_float if roll < 0.8 else make_range
        yield make(i, rng)


# --------------------------------------------------------------------------- release baseline

_BASE_NUMBER = re.compile(r"[-+]?\d*\.\d+|[-+]?\d+")


def fuzzywuzzy_ratio(a: str, b: str) -> int:
    """fuzzywuzzy's ``fuzz.ratio`` without python-Levenshtein: the rounded difflib ratio."""
    return round(100 * SequenceMatcher(None, a, b).ratio())


def baseline_class(label: str, answer: str, cfg: VerifyConfig) -> bool:
    """Released approach: every label word against *every* answer word, ``ratio > 85``."""
    words = V.label_words.__wrapped__(label, cfg.class_min_token_len)  # uncached, as released
    answer_words = V.tokens(answer)
    if not words:
        return f" {' '.join(V.tokens(label))} " in f" {' '.join(answer_words)} "
    cutoff = round(100 * cfg.class_ratio)
    return all(max((fuzzywuzzy_ratio(w, a) for a in answer_words), default=0) > cutoff for w in words)


def baseline_verify(record: Record, answer: str, cfg: VerifyConfig) -> bool:
    """All labels; floats accept any number within tolerance, ranges any consecutive pair."""
    for _, kind, value in record.labels():
        numbers = [float(x) for x in _BASE_NUMBER.findall(answer)]
        if kind == "class":
            ok = baseline_class(value, answer, cfg)
        elif kind == "float":
            ok = any(abs(x - value) <= cfg.float_rel_tol * abs(value) for x in numbers)
        else:
            pairs = [sorted(p) for p in zip(numbers, numbers[1:], strict=False)]
            ok = any(V.interval_iou(p, value) > cfg.range_iou for p in pairs)
        if not ok:
            return False
    return True


# --------------------------------------------------------------------------- timing


def clear_caches() -> None:
    """Every cache of the verifier package's modules, so each timing starts cold."""
    modules = [m for name, m in sys.modules.items() if f"{name}.".startswith(f"{V.__name__}.")]
    for fn in (fn for m in modules for fn in vars(m).values()):
        if hasattr(fn, "cache_clear"):
            fn.cache_clear()


def run_ours(n: int, keep: int, seed: int, cfg: VerifyConfig, chunk: int) -> dict[str, Any]:
    """Time verify_record over n answers, streaming; keep the first ``keep`` for the baseline."""
    clear_caches()
    kept: list[tuple[Record, str, bool]] = []
    elapsed = subset_elapsed = 0.0
    passed = 0
    stream = synthetic(n, seed)
    bar = tqdm(total=n, desc="ours", unit="ans", mininterval=1.0) if tqdm else None
    done = 0
    while done < n:
        batch = [next(stream) for _ in range(min(chunk, n - done))]
        t0 = time.perf_counter()
        decisions = [V.verify_record(rec, ans, cfg).passed for rec, ans in batch]
        dt = time.perf_counter() - t0
        elapsed += dt
        if done < keep:
            take = min(len(batch), keep - done)
            subset_elapsed += dt * take / len(batch)
            head = zip(batch[:take], decisions, strict=False)
            kept.extend((rec, ans, ok) for (rec, ans), ok in head)
        passed += sum(decisions)
        done += len(batch)
        if bar:
            bar.update(len(batch))
    if bar:
        bar.close()
    return {"elapsed": elapsed, "subset_elapsed": subset_elapsed, "passed": passed, "kept": kept}


def run_baseline(kept: list[tuple[Record, str, bool]], cfg: VerifyConfig) -> dict[str, Any]:
    items = tqdm(kept, desc="baseline", unit="ans", mininterval=1.0) if tqdm else kept
    t0 = time.perf_counter()
    decisions = [baseline_verify(rec, ans, cfg) for rec, ans, _ in items]
    return {"elapsed": time.perf_counter() - t0, "decisions": decisions}


def agreement(kept: list[tuple[Record, str, bool]], base: list[bool], siblings: bool
              ) -> tuple[int, int]:
    """(agreeing, compared) class decisions, on labels with or without siblings."""
    pairs = [(ok, b) for (rec, _, ok), b in zip(kept, base, strict=True)
             if rec.label_type == ["class"] and bool(rec.siblings("action")) is siblings]
    return sum(ok == b for ok, b in pairs), len(pairs)


def class_only_speed(kept: list[tuple[Record, str, bool]], cfg: VerifyConfig) -> dict[str, float]:
    """Answers/s on the class records alone, where the fuzzy matching is the whole cost."""
    items = [(rec, ans) for rec, ans, _ in kept if rec.label_type == ["class"]]
    clear_caches()
    t0 = time.perf_counter()
    for rec, ans in items:
        V.verify_record(rec, ans, cfg)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    for rec, ans in items:
        baseline_class(rec.label["action"], ans, cfg)
    base = time.perf_counter() - t0
    return {"answers": len(items), "ours_per_s": len(items) / ours,
            "baseline_per_s": len(items) / base}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="synthetic answers for ours")
    ap.add_argument("--baseline-n", type=int, default=50_000, help="answers for the baseline")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=10_000)
    ap.add_argument("--json", help="also write the summary to this file")
    args = ap.parse_args(argv)
    cfg = VerifyConfig()
    keep = min(args.baseline_n, args.n)

    ours = run_ours(args.n, keep, args.seed, cfg, args.chunk)
    base = run_baseline(ours["kept"], cfg)
    same, total = agreement(ours["kept"], base["decisions"], siblings=False)
    sib_same, sib_total = agreement(ours["kept"], base["decisions"], siblings=True)
    cls = class_only_speed(ours["kept"], cfg)
    ours_subset = keep / ours["subset_elapsed"]
    base_rate = keep / base["elapsed"]
    summary = {
        "n": args.n, "baseline_n": keep, "seed": args.seed,
        "ours_answers_per_s": args.n / ours["elapsed"],
        "ours_yield": ours["passed"] / args.n,
        "ours_subset_answers_per_s": ours_subset,
        "baseline_subset_answers_per_s": base_rate,
        "speedup_ours_over_baseline": ours_subset / base_rate,
        "class_only": {**cls, "speedup": cls["ours_per_s"] / cls["baseline_per_s"]},
        "class_agreement": same / total if total else 1.0,
        "class_compared": total,
        "sibling_label_answers": sib_total,
        "sibling_label_decisions_changed": sib_total - sib_same,
    }
    print(f"ours:      {summary['ours_answers_per_s']:>10,.0f} answers/s over {args.n:,} answers"
          f" (yield {summary['ours_yield']:.3f})")
    note = " (baseline runs on this subset only: it is too slow for all)" if keep < args.n else ""
    print(f"subset:    first {keep:,} answers{note}")
    print(f"  ours     {ours_subset:>10,.0f} answers/s")
    print(f"  baseline {base_rate:>10,.0f} answers/s   -> ours/baseline = "
          f"{summary['speedup_ours_over_baseline']:.1f}x")
    print(f"class only ({cls['answers']:,} answers): ours {cls['ours_per_s']:,.0f}/s, baseline "
          f"{cls['baseline_per_s']:,.0f}/s -> {summary['class_only']['speedup']:.1f}x")
    print(f"class decisions agree (labels without siblings): {same:,}/{total:,} = "
          f"{summary['class_agreement']:.2%}")
    print(f"labels with siblings: {sib_total - sib_same:,} of {sib_total:,} decisions differ "
          "(told apart from a sibling class)")
    if args.json:
        write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
