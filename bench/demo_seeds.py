"""The demo for several seeds: how much of its result is the method and how much is the seed.

Each seed S builds its own tiny base (``model tiny --seed S``), 192 training videos (seed 2S),
reported held-out clips (seed 2S+1, 24) and validation clips (seed 1000+S, 48) — seed 0 is
exactly ``make demo`` — and runs the same pipeline of ``configs/tiny.yaml`` (generation, SFT,
reward model and RL seeded with S too) through ``kfp.local``. The validation clips choose the
cycle handed on (``decide.select``); the held-out clips are only reported. With ``--compare``,
the other RL algorithm runs too, as the stand-alone RLAIF pipeline on the same chosen model.

Prints, per cycle, the mean and range over seeds of answer yield and held-out and validation
accuracy; per seed the chosen cycle, accuracy before and after RL, the reward model's held-out
accuracy, RL's held-out reward and KL; and the issue's targets against the means. Plots
held-out accuracy per cycle to ``<root>/accuracy_per_cycle.png`` and logs table and plot to
MLflow (``<root>/mlflow.db``, experiment ``videostar-demo-seeds``).

Hyperparameters are chosen on validation seeds (``--seeds 100 101 102``, ``--set key=value``)
and reported on seeds 0-2, never tuned on them.

Usage: python bench/demo_seeds.py [--seeds 0 1 2] [--root demo/seeds] [--compare grpo]
       [--set sft.epochs=4 ...] [--json out.json]
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

from videostar.config import config_from_dict

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
ACCURACY, VALIDATION = "eval.kinetics700.accuracy", "val.kinetics700.accuracy"
VIDEOS = 192
"""Training videos per seed, as ``make demo``."""


def with_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``a.b.c=value`` (value parsed as YAML) set in the config dict."""
    for item in overrides:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = cfg
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = yaml.safe_load(value)
    return cfg


def seed_config(seed: int, home: Path, overrides: list[str]) -> dict[str, Any]:
    """``configs/tiny.yaml`` with the seed's data, its seeds and ``overrides`` (checked by loading)."""
    cfg = with_overrides(yaml.safe_load(CONFIG.read_text()), overrides)
    cfg["pipeline"] |= {"base_model": str(home / "base"), "dataset": str(home / "data" / "records.jsonl")}
    for suite, name in zip(cfg["evaluate"]["suites"], ("heldout", "validation"), strict=True):
        suite["data"] = {"csv": str(home / name / "validate.csv"), "videos": str(home / name / "videos")}
    for section in (cfg["generate"], cfg["sft"], *(cfg["rlaif"].setdefault(k, {})
                                                    for k in ("reward_model", "ppo", "grpo"))):
        section["seed"] = seed
    cfg["tracking"] |= {"mlflow_uri": f"sqlite:///{home / 'mlflow.db'}", "store": str(home / "store")}
    config_from_dict(cfg)
    return cfg


def run_pipeline(cfg: dict[str, Any], config: Path, runs: Path) -> LocalRun:
    """One pipeline run in its own process, as ``make demo`` runs it (kfp.local slows down run
    after run in one process)."""
    config.write_text(yaml.safe_dump(cfg))
    before = set(runs.glob("*")) if runs.exists() else set()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "videostar.cli", "--config", str(config), "run", "--local",
                    "--root", str(runs)], check=True)
    (run_dir,) = set(runs.glob("*")) - before
    return collect(run_dir, time.perf_counter() - started)


def run_seed(seed: int, root: Path, overrides: list[str], compare: str | None, videos: int
             ) -> tuple[LocalRun, LocalRun | None]:
    """Base, data and the whole pipeline for ``seed`` under ``root/seed-<seed>``; with ``compare``,
    the stand-alone RLAIF pipeline with that algorithm on the model the cycles handed on."""
    home = root / f"seed-{seed}"
    home.mkdir(parents=True, exist_ok=True)
    cfg = seed_config(seed, home, overrides)
    inputs = [
        (home / "base" / "videostar_model.json",
         ["model", "tiny", "--seed", str(seed), "--out", str(home / "base")]),
        (home / "data" / "records.jsonl",
         ["data", "synthetic", "--count", str(videos), "--seed", str(2 * seed), "--out", str(home / "data")]),
        (home / "heldout" / "validate.csv",
         ["data", "synthetic", "--kinetics", "--count", "24", "--seed", str(2 * seed + 1),
          "--out", str(home / "heldout")]),
        (home / "validation" / "validate.csv",
         ["data", "synthetic", "--kinetics", "--count", "48", "--seed", str(1000 + seed),
          "--out", str(home / "validation")]),
    ]
    for done, args in inputs:  # a rerun keeps the base and data an earlier one built
        if not done.exists():
            subprocess.run([sys.executable, "-m", "videostar.cli", *args], check=True)
    run = run_pipeline(cfg, home / "run.yaml", home / "runs")
    other = None
    if compare and run.handed_on is not None:
        alt = json.loads(json.dumps(cfg))
        alt["rlaif"] |= {"algorithm": compare, "sft_model": str(run.handed_on)}
        other = run_pipeline(alt, home / f"run-{compare}.yaml", home / f"runs-{compare}")
    return run, other


def rl_numbers(run: LocalRun | None) -> dict[str, Any]:
    """The RL step's numbers of a run (PPO's or GRPO's) and the accuracy after it."""
    if run is None:
        return {}
    r = run.rlaif
    algorithm = next((a for a in ("ppo", "grpo") if a in r), None)
    rl = r.get(algorithm, {}) if algorithm else {}
    return {"algorithm": algorithm, "reward_before": rl.get("heldout_reward_before"),
            "reward_after": rl.get("heldout_reward_after"), "final_kl": rl.get("final_kl"),
            "kl_within_budget": rl.get("kl_within_budget"),
            "accuracy": r.get("scores", {}).get(ACCURACY),
            "validation": r.get("scores", {}).get(VALIDATION)}


def summarize(runs: dict[int, tuple[LocalRun, LocalRun | None]]) -> dict[str, Any]:
    """Per cycle and per seed: the numbers the table and the plot show."""
    cycles = max(len(r.cycles) for r, _ in runs.values())
    per_cycle = []
    for k in range(cycles):
        row: dict[str, Any] = {"cycle": k}
        for key in ("answer_yield", ACCURACY, VALIDATION):
            row[key] = {s: r.cycles[k][key] for s, (r, _) in runs.items()
                        if k < len(r.cycles) and r.cycles[k].get(key) is not None}
        per_cycle.append(row)
    seeds = {}
    for s, (r, other) in runs.items():
        chosen = r.decisions[-1].get("chosen", len(r.cycles) - 1)
        seeds[s] = {
            "seconds": round(r.seconds + (other.seconds if other else 0), 1),
            "base_accuracy": r.baseline.get(ACCURACY),
            "answer_yield": [c["answer_yield"] for c in r.cycles],
            "accuracy": [c.get(ACCURACY) for c in r.cycles],
            "validation": [c.get(VALIDATION) for c in r.cycles],
            "chosen": chosen, "chosen_accuracy": r.cycles[chosen].get(ACCURACY),
            "rm_heldout_accuracy": r.rlaif.get("reward_model", {}).get("heldout_accuracy"),
            "rm_heldout_pairs": r.rlaif.get("reward_model", {}).get("heldout_pairs"),
            "rl": rl_numbers(r), "compare": rl_numbers(other),
        }
    return {"per_cycle": per_cycle, "seeds": seeds, "targets": targets(seeds)}


def targets(seeds: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, on the means over seeds."""
    def mean(values: list[float | None]) -> float | None:
        values = [v for v in values if v is not None]
        return statistics.mean(values) if values else None

    out: dict[str, Any] = {
        "chosen_minus_base": mean([v["chosen_accuracy"] - v["base_accuracy"] for v in seeds.values()]),
        "rm_heldout_accuracy": mean([v["rm_heldout_accuracy"] for v in seeds.values()]),
    }
    for key in ("rl", "compare"):
        gains = [v[key]["accuracy"] - v["chosen_accuracy"] for v in seeds.values()
                 if v[key].get("accuracy") is not None]
        if gains:
            name = next(v[key]["algorithm"] for v in seeds.values() if v[key])
            out[name] = {"mean_gain": mean(gains), "seeds_not_below": sum(g >= 0 for g in gains),
                         "seeds": len(gains)}
    return out


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.mean(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def print_table(result: dict[str, Any]) -> str:
    lines = ["cycle | answer yield mean [min, max] | held-out accuracy | validation accuracy"]
    for row in result["per_cycle"]:
        lines.append(f"{row['cycle']} | {spread(list(row['answer_yield'].values()))} | "
                     f"{spread(list(row[ACCURACY].values()))} | {spread(list(row[VALIDATION].values()))}")
    lines.append("seed | base acc | held-out acc per cycle | chosen (val) | RM held-out (pairs) | "
                 "RL: held-out reward before -> after (KL) | acc after RL | seconds")
    for s, v in result["seeds"].items():
        for key in ("rl", "compare"):
            rl = v[key]
            if not rl:
                continue
            lines.append(
                f"{s} | {_f(v['base_accuracy'])} | {' '.join(_f(a) for a in v['accuracy'])} | "
                f"{v['chosen']} ({_f(v['chosen_accuracy'])}) | {_f(v['rm_heldout_accuracy'])} "
                f"({v['rm_heldout_pairs']}) | {rl['algorithm']}: {_f(rl['reward_before'])} -> "
                f"{_f(rl['reward_after'])} ({_f(rl['final_kl'])}) | {_f(rl['accuracy'])} | {v['seconds']}")
    t = result["targets"]
    lines.append(f"targets (means): chosen - base {_f(t['chosen_minus_base'])} (>= 0.300); "
                 f"reward model {_f(t['rm_heldout_accuracy'])} (>= 0.800)")
    for name in ("ppo", "grpo"):
        if name in t:
            g = t[name]
            lines.append(f"  {name}: mean accuracy gain over the chosen cycle {_f(g['mean_gain'])} "
                         f"(>= 0.030); not below it in {g['seeds_not_below']} of {g['seeds']} seeds")
    text = "\n".join(lines)
    print(text)
    return text


def plot(result: dict[str, Any], path: Path) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for s, v in result["seeds"].items():
        xs = ["base", *map(str, range(len(v["accuracy"]))), *(
            [v[k]["algorithm"] for k in ("rl", "compare") if v[k].get("accuracy") is not None])]
        ys = [v["base_accuracy"], *v["accuracy"], *(
            [v[k]["accuracy"] for k in ("rl", "compare") if v[k].get("accuracy") is not None])]
        ax.plot(xs, ys, marker="o", label=f"seed {s}")
    ax.set(xlabel="model", ylabel="held-out accuracy", ylim=(0, 1),
           title="Video-STaR demo: held-out K700-QA accuracy")
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
            for k, (y, a) in enumerate(zip(v["answer_yield"], v["accuracy"], strict=True)):
                mlflow.log_metric(f"answer_yield.seed_{s}", y, step=k)
                if a is not None:
                    mlflow.log_metric(f"heldout_accuracy.seed_{s}", a, step=k)
            if v["rm_heldout_accuracy"] is not None:
                mlflow.log_metric(f"rm_heldout_accuracy.seed_{s}", v["rm_heldout_accuracy"])
        mlflow.log_figure(fig, "accuracy_per_cycle.png")
        mlflow.log_text(table, "seeds.txt")
        mlflow.log_dict(result, "seeds.json")


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", default="demo/seeds")
    parser.add_argument("--compare", choices=("ppo", "grpo"),
                        help="also run this RL algorithm (stand-alone RLAIF on the chosen model)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override configs/tiny.yaml (choose on validation seeds only)")
    parser.add_argument("--videos", type=int, default=VIDEOS, help="training videos per seed")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs = {s: run_seed(s, root, args.overrides, args.compare, args.videos) for s in args.seeds}
    result = summarize(runs)
    result |= {"seconds": round(time.perf_counter() - started, 1), "overrides": args.overrides}
    table = print_table(result)
    fig = plot(result, root / "accuracy_per_cycle.png")
    log_to_mlflow(result, table, fig, root)
    print(f"plot: {root / 'accuracy_per_cycle.png'}; MLflow: sqlite:///{root / 'mlflow.db'} "
          f"(experiment videostar-demo-seeds); {result['seconds']:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
