"""Generation throughput: batched, left-padded ``generate_batch`` against one-at-a-time generation.

The baseline answers every record alone (batch size 1, a Python loop), as a naive generation
script does; ours groups records into left-padded batches so every answer starts at the same
position. Both run greedy (temperature 0) with the same ``max_new_tokens`` on the same records in
this process, so their outputs are comparable: left padding (with the attention mask) should
leave every answer unchanged, and the bench counts the identical ones per batch size.

Frames are decoded once before timing, so only generation is measured (prompt encoding by the
processor included, as in ``generate_answers``). Each batch size is warmed up once, then the
methods run ``--repeats`` rounds, interleaved, and the best round of each is reported (the machine
may be shared; the best round is the least disturbed one). By default
the tiny Qwen2.5-VL checkpoint and synthetic shape videos are built in a temporary folder
(about 20-40 s, not timed); ``--model DIR --data records.jsonl`` use existing ones instead.

Torch runs on ``--threads`` threads, 1 by default: the tiny model's ops are too small to gain
from more, and on a machine whose cores are shared with other jobs OpenMP's waiting threads
make a 2-thread run many times slower (building the tiny model took 380 s with 2 threads
against 34 s with 1 on a 2-core machine with one core busy). ``--threads 0`` keeps torch's default.

    python bench/bench_generate.py --records 48 --batch-sizes 4 8 16 --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videostar.config import GenerateConfig
from videostar.data.records import Record, read_records, write_json
from videostar.data.synthetic import build_synthetic
from videostar.generation import generate_batch
from videostar.model import LoadedModel, load_model
from videostar.prompts import DEFAULT_TEMPLATES, answer_prompt
from videostar.video import read_frames

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:
    from tqdm import tqdm
except ImportError:  # progress is optional
    tqdm = None


def prepare(args: argparse.Namespace, tmp: Path) -> tuple[str, list[Record]]:
    """The model folder and records: given ones, or the tiny model and synthetic data built here."""
    model = args.model
    if model is None:
        from videostar.tiny import build_tiny

        print("building the tiny model (not timed) ...", flush=True)
        model = str(tmp / "tiny")
        build_tiny(model, progress=False)
    if args.data:
        records = read_records(args.data)
    else:
        videos = math.ceil(args.records / 3)  # one record per (video, task), three tasks
        records = build_synthetic(tmp / "data", videos, DEFAULT_TEMPLATES, seed=args.seed).records
    return model, records[: args.records]


def decode_all(records: list[Record], num_frames: int) -> list[np.ndarray]:
    items = tqdm(records, desc="decode", unit="video") if tqdm else records
    return [read_frames(r.video, num_frames, r.start, r.end) for r in items]


def run(lm: LoadedModel, prompts: list[str], videos: list[np.ndarray], size: int,
        max_new_tokens: int, desc: str) -> dict[str, Any]:
    """Answer every prompt in batches of ``size``; the timing covers generation only."""
    cfg = GenerateConfig(temperature=0.0, max_new_tokens=max_new_tokens, batch_size=size)
    answers: list[str] = []
    bar = tqdm(total=len(prompts), desc=desc, unit="ans") if tqdm else None
    t0 = time.perf_counter()
    for lo in range(0, len(prompts), size):
        answers += generate_batch(lm, prompts[lo:lo + size], videos[lo:lo + size], cfg, seed=0)
        if bar:
            bar.update(len(prompts[lo:lo + size]))
    elapsed = time.perf_counter() - t0
    if bar:
        bar.close()
    return {"elapsed": elapsed, "answers": answers}


def warm_up(lm: LoadedModel, prompts: list[str], videos: list[np.ndarray], size: int,
            max_new_tokens: int) -> None:
    cfg = GenerateConfig(temperature=0.0, max_new_tokens=max_new_tokens, batch_size=size)
    generate_batch(lm, prompts[:size], videos[:size], cfg, seed=0)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder (default: build the tiny model in a temp dir)")
    ap.add_argument("--data", help="records JSONL (default: synthetic shape videos in a temp dir)")
    ap.add_argument("--records", type=int, default=48, help="records to answer")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16],
                    help="batch sizes for ours (the baseline is batch size 1)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--num-frames", type=int, default=8)
    ap.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per method (best is kept)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    ap.add_argument("--json", help="also write the summary to this file")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="videostar-bench-gen-") as tmp:
        model_dir, records = prepare(args, Path(tmp))
        lm = load_model(model_dir, device=args.device)
        ask = answer_prompt(GenerateConfig().instruction)
        prompts = [ask(r) for r in records]
        videos = decode_all(records, args.num_frames)
        n = len(prompts)
        sizes = [s for s in dict.fromkeys(args.batch_sizes) if s != 1]

        for size in [1, *sizes]:
            warm_up(lm, prompts, videos, size, args.max_new_tokens)
        rounds: dict[int, list[dict[str, Any]]] = {s: [] for s in [1, *sizes]}
        for r in range(args.repeats):
            for size in rounds:
                desc = f"{'baseline' if size == 1 else 'batched'} bs={size} [{r + 1}/{args.repeats}]"
                rounds[size].append(run(lm, prompts, videos, size, args.max_new_tokens, desc))
        best = {s: min(res, key=lambda x: x["elapsed"]) for s, res in rounds.items()}
        spread = {s: [x["elapsed"] for x in res] for s, res in rounds.items()}
        base = best.pop(1)
        ours = best

    base_rate = n / base["elapsed"]
    lengths = [len(lm.tokenizer(a)["input_ids"]) for a in base["answers"]]
    rows = []
    for size, res in ours.items():
        same = sum(a == b for a, b in zip(res["answers"], base["answers"], strict=True))
        rate = n / res["elapsed"]
        rows.append({"batch_size": size, "seconds": res["elapsed"], "seconds_all_rounds": spread[size],
                     "answers_per_s": rate,
                     "speedup_vs_one_at_a_time": rate / base_rate, "identical_answers": same,
                     "first_mismatch": next(({"id": r.id, "batched": a, "one_at_a_time": b}
                                             for r, a, b in zip(records, res["answers"],
                                                                base["answers"], strict=True)
                                             if a != b), None)})
    summary = {
        "model": args.model or "tiny (built here)", "records": n,
        "max_new_tokens": args.max_new_tokens, "num_frames": args.num_frames,
        "device": str(lm.device), "torch_threads": torch.get_num_threads(), "repeats": args.repeats,
        "mean_answer_tokens": sum(lengths) / max(1, n),
        "baseline": {"name": "one-at-a-time (batch size 1 loop)", "seconds": base["elapsed"],
                     "seconds_all_rounds": spread[1], "answers_per_s": base_rate},
        "batched": rows,
    }

    print(f"\n{n} records, greedy, max_new_tokens={args.max_new_tokens}, device={lm.device}, "
          f"{torch.get_num_threads()} thread(s), best of {args.repeats}, "
          f"mean answer length {summary['mean_answer_tokens']:.1f} tokens")
    print(f"{'method':<22}{'seconds':>9}{'answers/s':>11}{'vs bs=1':>9}{'identical':>12}")
    print(f"{'one-at-a-time (bs=1)':<22}{base['elapsed']:>9.2f}{base_rate:>11.2f}{1.0:>8.2f}x"
          f"{'-':>12}")
    for row in rows:
        print(f"{'batched bs=' + str(row['batch_size']):<22}{row['seconds']:>9.2f}"
              f"{row['answers_per_s']:>11.2f}{row['speedup_vs_one_at_a_time']:>8.2f}x"
              f"{str(row['identical_answers']) + '/' + str(n):>12}")
    for row in rows:
        if row["first_mismatch"]:
            m = row["first_mismatch"]
            print(f"bs={row['batch_size']} first mismatch {m['id']}:\n  batched:       "
                  f"{m['batched']!r}\n  one-at-a-time: {m['one_at_a_time']!r}")
    if args.json:
        write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
