"""The demo for several seeds: how much of its result is the method and how much is the seed.

Each seed builds its own tiny base (``model tiny --seed S``), training videos (seed 2S) and
held-out clips (seed 2S+1) — seed 0 is exactly ``make demo`` — and runs the same pipeline of
``configs/tiny.yaml`` (generation, SFT, reward model and PPO seeded with S too) through
``kfp.local``. Prints, per cycle, the mean and range over seeds of answer yield, total yield and
held-out accuracy, and the reward model's accuracy and PPO's held-out reward per seed; plots the
yield per cycle, one line per seed, to ``<root>/yield_per_cycle.png`` and logs table and plot
to MLflow (``<root>/mlflow.db``, experiment ``videostar-demo-seeds``).

Usage: python bench/demo_seeds.py [--seeds 0 1 2] [--root demo/seeds] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from videostar.pipelines.local import LocalRun, collect

from videostar.config import config_to_json, load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
ACCURACY = "eval.kinetics700.accuracy"


def run_seed(seed: int, root: Path) -> LocalRun:
    """Base, data and one whole pipeline run for ``seed`` under ``root/seed-<seed>``, each in its
    own process as ``make demo`` runs them (kfp.local slows down run after run in one process)."""
    home = root / f"seed-{seed}"
    cfg = load_config(CONFIG)
    cfg.pipeline.base_model, cfg.pipeline.dataset = str(home / "base"), str(home / "data" / "records.jsonl")
    cfg.evaluate.suites[0].data = {"csv": str(home / "heldout" / "validate.csv"),
                                     "videos": str(home / "heldout" / "videos")}
    for section in (cfg.generate, cfg.sft, cfg.rlaif.reward_model, cfg.rlaif.ppo):
        section.seed = seed
    cfg.tracking.mlflow_uri = f"sqlite:///{home / 'mlflow.db'}"
    cfg.tracking.store = str(home / "store")
    config = home / "run.yaml"
    home.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(json.loads(config_to_json(cfg))))
    steps = [
        (home / "base" / "videostar_model.json",
         ["model", "tiny", "--seed", str(seed), "--out", str(home / "base")]),
        (home / "data" / "records.jsonl",
         ["data", "synthetic", "--count", "48", "--seed", str(2 * seed), "--out", str(home / "data")]),
        (home / "heldout" / "validate.csv",
         ["data", "synthetic", "--kinetics", "--count", "24", "--seed", str(2 * seed + 1),
          "--out", str(home / "heldout")]),
        (None, ["--config", str(config), "run", "--local", "--root", str(home / "runs")]),
    ]
    before = set((home / "runs").glob("*")) if (home / "runs").exists() else set()
    started = time.perf_counter()
    for done, args in steps:  # a rerun keeps the base and data an earlier one built
        if done is None or not done.exists():
            subprocess.run([sys.executable, "-m", "videostar.cli", *args], check=True)
    seconds = time.perf_counter() - started
    (run_dir,) = set((home / "runs").glob("*")) - before
    return collect(run_dir, seconds)
def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.mean(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def summarize(runs: dict[int, LocalRun]) -> dict[str, Any]:
    """Per cycle and per seed: the numbers the table and the plot show."""
    cycles = max(len(r.cycles) for r in runs.values())
    per_cycle = []
    for k in range(cycles):
        row: dict[str, Any] = {"cycle": k}
        for key in ("answer_yield", "total_yield", ACCURACY):
            row[key] = {s: r.cycles[k][key] for s, r in runs.items()
                        if k < len(r.cycles) and r.cycles[k].get(key) is not None}
        per_cycle.append(row)
    seeds = {}
    for s, r in runs.items():
        rm, ppo = r.rlaif.get("reward_model", {}), r.rlaif.get("ppo", {})
        seeds[s] = {
            "seconds": round(r.seconds, 1), "base_accuracy": r.baseline.get(ACCURACY),
            "answer_yield": [c["answer_yield"] for c in r.cycles],
            "climb": r.cycles[-1]["answer_yield"] - r.cycles[0]["answer_yield"],
            "rm_heldout_accuracy": rm.get("heldout_accuracy"), "rm_heldout_pairs": rm.get("heldout_pairs"),
            "ppo_reward_before": ppo.get("heldout_reward_before"),
            "ppo_reward_after": ppo.get("heldout_reward_after"), "ppo_final_kl": ppo.get("final_kl"),
            "rlaif_accuracy": r.rlaif.get("scores", {}).get(ACCURACY),
        }
    return {"per_cycle": per_cycle, "seeds": seeds}


def print_table(result: dict[str, Any]) -> str:
    lines = ["cycle | answer yield mean [min, max] | total yield | held-out accuracy"]
    for row in result["per_cycle"]:
        lines.append(f"{row['cycle']} | {spread(list(row['answer_yield'].values()))} | "
                     f"{spread(list(row['total_yield'].values()))} | {spread(list(row[ACCURACY].values()))}")
    lines.append("seed | climb (last - first answer yield) | base acc | RM held-out acc (pairs) | "
                 "PPO held-out reward before -> after (KL) | acc after PPO | seconds")
    for s, v in result["seeds"].items():
        lines.append(f"{s} | {v['climb']:+.3f} | {v['base_accuracy']:.3f} | "
                     f"{v['rm_heldout_accuracy']:.3f} ({v['rm_heldout_pairs']}) | "
                     f"{v['ppo_reward_before']:.3f} -> {v['ppo_reward_after']:.3f} "
                     f"({v['ppo_final_kl']:.3f}) | "
                     f"{v['rlaif_accuracy']:.3f} | {v['seconds']}")
    text = "\n".join(lines)
    print(text)
    return text


def plot(result: dict[str, Any], path: Path) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for s, v in result["seeds"].items():
        ax.plot(range(len(v["answer_yield"])), v["answer_yield"], marker="o", label=f"seed {s}")
    ax.set(xlabel="cycle", ylabel="answer yield", ylim=(0, 1), title="Video-STaR demo: answer yield")
    ax.set_xticks(range(len(result["per_cycle"])))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def log_to_mlflow(result: dict[str, Any], table: str, fig: Any, root: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{(root / 'mlflow.db').resolve()}")
    mlflow.set_experiment("videostar-demo-seeds")
    with mlflow.start_run(run_name=f"seeds-{'-'.join(map(str, result['seeds']))}"):
        for s, v in result["seeds"].items():
            for k, y in enumerate(v["answer_yield"]):
                mlflow.log_metric(f"answer_yield.seed_{s}", y, step=k)
            mlflow.log_metric(f"rm_heldout_accuracy.seed_{s}", v["rm_heldout_accuracy"])
        mlflow.log_figure(fig, "yield_per_cycle.png")
        mlflow.log_text(table, "seeds.txt")
        mlflow.log_dict(result, "seeds.json")


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", default="demo/seeds")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs = {s: run_seed(s, root) for s in args.seeds}
    result = summarize(runs)
    result["seconds"] = round(time.perf_counter() - started, 1)
    table = print_table(result)
    fig = plot(result, root / "yield_per_cycle.png")
    log_to_mlflow(result, table, fig, root)
    print(f"plot: {root / 'yield_per_cycle.png'}; MLflow: sqlite:///{root / 'mlflow.db'} "
          f"(experiment videostar-demo-seeds); {result['seconds']:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
