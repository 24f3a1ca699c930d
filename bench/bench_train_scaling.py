"""SFT throughput by process count: the library's own loop (``star.sft.train``) under ``torchrun``.

Each process count runs ``torchrun --standalone --nproc-per-node P`` on this file's worker, which
trains a LoRA adapter with :func:`videostar.star.sft.train` on synthetic videos (decoded,
encoded, forward/backward, gradients summed over the ranks, AdamW) at the same *global* batch
for every P, after one untimed warm-up step; on CPU each process has one thread. Tokens/s
counts every sequence position the ranks trained on (text and video tokens) over the timed
loop's wall time.

    python bench/bench_train_scaling.py                 # CPU: the tiny model, 1 vs 2 processes (gloo)
    python bench/bench_train_scaling.py --gpu           # Qwen2.5-VL-7B-size random weights, LoRA r=64,
                                                        # 1, 2, 4, 8 GPUs (as many as there are; nccl)

``--gpu`` builds the real-size config with random weights (no download, as ``bench_gpu.py``) in
bf16 with gradient checkpointing, and reports MFU per GPU: model FLOPs per token
``4 N + 12 L d S`` (LoRA: input gradients, no weight gradients; N language-model matmul
parameters, L layers, d hidden, S the mean sequence length) over the dense bf16 peak of the
device; the frozen vision tower's forward is left out, so MFU is a lower bound.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve()
sys.path.insert(0, str(BENCH.parent))  # bench_gpu: the real-size configs and FLOP counting

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def worker(args: argparse.Namespace) -> None:
    """One rank: build the model, train (warm-up, then timed), rank 0 writes the numbers."""
    import torch

    from videostar.config import LoraConfig, SFTConfig, VideoConfig
    from videostar.model import add_lora, load_model
    from videostar.star.sft import examples_from_rows, train
    from videostar.training import distributed as dist

    dist.init()
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()]
    rows = [{**r, "answer": r["meta"].get("reference") or "The answer is in the video."} for r in rows]
    examples = examples_from_rows(rows, "")
    torch.manual_seed(0)
    lora = LoraConfig(r=64, alpha=128, dropout=0.0) if args.gpu else LoraConfig(r=8, alpha=16, dropout=0.0)
    if args.gpu:
        from bench_gpu import PEAK_TFLOPS, build, matmul_params

        lm = build(args.arch, tiny=False, device="cuda")
        counts = matmul_params(lm.model)
    else:
        lm = load_model(args.base)
    lm = add_lora(lm, lora)
    video = VideoConfig(num_frames=args.frames)
    cfg = SFTConfig(lr=1e-4, epochs=1, batch_size=args.batch, warmup_ratio=0.0, seed=0,
                    checkpoint_steps=0, gradient_checkpointing=args.gpu, lora=lora)
    train(lm, examples[:args.batch], cfg, video, progress=False)  # warm-up: one step, untimed
    metrics = train(lm, examples[:args.batch * args.steps], cfg, video, progress=False)
    if not dist.is_main():
        return
    tokens_per_s = metrics["tokens"] / metrics["seconds"]
    result: dict[str, Any] = {"procs": dist.world_size(), "steps": metrics["optimizer_steps"],
                              "global_batch": args.batch, "tokens": metrics["tokens"],
                              "seconds": metrics["seconds"], "tokens_per_s": tokens_per_s,
                              "tokens_per_s_per_proc": tokens_per_s / dist.world_size(),
                              "final_loss": metrics["loss_history"][-1], "mfu": None}
    if args.gpu:
        n_lm, _, layers, hidden = counts
        seq = metrics["tokens"] / (args.batch * metrics["optimizer_steps"])
        name = torch.cuda.get_device_name()
        peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
        if peak:
            result["mfu"] = (4 * n_lm + 12 * layers * hidden * seq) * result["tokens_per_s_per_proc"] / (
                peak * 1e12)
    Path(args.result).write_text(json.dumps(result))


def run(procs: int, args: argparse.Namespace, data: Path, base: Path | None, tmp: Path) -> dict[str, Any]:
    result = tmp / f"result-{procs}.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
           str(BENCH), "--worker", "--data", str(data), "--result", str(result),
           "--batch", str(args.batch), "--steps", str(args.steps), "--frames", str(args.frames),
           "--arch", args.arch]
    cmd += ["--gpu"] if args.gpu else ["--base", str(base)]
    cmd += ["--peak-tflops", str(args.peak_tflops)] if args.peak_tflops else []
    # One thread a process (torchrun's own default past one process), so P processes use P cores:
    # two threads in one process on this 2-core shared machine ran 11x slower than one.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads(result.read_text())


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median tokens/s, with every run's tokens/s beside it."""
    ranked = sorted(runs, key=lambda r: r["tokens_per_s"])
    return {**ranked[len(ranked) // 2], "all_tokens_per_s": [round(r["tokens_per_s"], 1) for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", action="store_true", help="real-size random model on the GPUs")
    parser.add_argument("--arch", default="qwen2_5_vl", help="the family (--gpu)")
    parser.add_argument("--procs", type=int, nargs="+", help="process counts (default: 1 2 on CPU, "
                        "1 2 4 8 up to the GPU count with --gpu)")
    parser.add_argument("--base", help="a tiny base to reuse (CPU; default: built here)")
    parser.add_argument("--batch", type=int, help="global batch (default: 4 on CPU, 8 on GPU)")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak (default: by device name)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the counts in turn, report "
                        "each count's median run (a shared machine's load moves single runs)")
    parser.add_argument("--out", help="write the results as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batch = args.batch or (8 if args.gpu else 4)
    if args.worker:
        worker(args)
        return
    import torch

    from videostar.data.records import write_jsonl
    from videostar.data.synthetic import build_synthetic
    from videostar.prompts import DEFAULT_TEMPLATES
    from videostar.tiny import build_tiny

    gpus = torch.cuda.device_count()
    procs = args.procs or ([p for p in (1, 2, 4, 8) if p <= gpus] if args.gpu else [1, 2])
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp_name:
        tmp = Path(tmp_name)
        base = Path(args.base) if args.base else tmp / "base"
        if not args.base and not args.gpu:  # random weights: throughput does not depend on them
            build_tiny(base, videos=8, steps=0, progress=False)
        count = -(-args.batch * (args.steps + 1) // 3)  # 3 records a video
        synthetic = build_synthetic(tmp / "data", count, DEFAULT_TEMPLATES, seed=0)
        data = tmp / "records.jsonl"
        write_jsonl(data, synthetic.records)
        runs = [run(p, args, data, None if args.gpu else base, tmp)
                for _ in range(args.rounds) for p in procs]
    rows = [median_run([r for r in runs if r["procs"] == p]) for p in procs]
    first = rows[0]["tokens_per_s"]
    print(f"{'procs':>5} {'tokens/s':>10} {'per proc':>10} {'speed-up':>9} {'MFU/GPU':>8} {'loss':>8}  runs")
    for r in rows:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        print(f"{r['procs']:>5} {r['tokens_per_s']:>10.1f} {r['tokens_per_s_per_proc']:>10.1f} "
              f"{r['tokens_per_s'] / first:>8.2f}x {mfu:>8} {r['final_loss']:>8.4f}  {r['all_tokens_per_s']}")
    if args.out:
        Path(args.out).write_text(json.dumps({"gpu": args.gpu, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
