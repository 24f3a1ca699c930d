"""Run the cluster pipeline on this machine through ``kfp.local`` and read back its results.

The very pipeline users submit runs here: it is compiled to the YAML a cluster receives, and
``kfp.local`` runs that file (kept in the run folder as ``pipeline.yaml``), each task's own command
in a subprocess of the current Python environment (``SubprocessRunner(use_venv=False)``: the
``python3`` of a task's command is this interpreter). Kubernetes-only settings (images,
accelerators, node selectors, secrets) are ignored by the local runner.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from videostar.pipelines.preload import warm_python

from videostar import layout, terminal, tracking
from videostar.config import RunConfig
from videostar.errors import ConfigError, VideostarError


@dataclass
class LocalRun:
    """Where a local run wrote its outputs, and each cycle's summary."""

    root: Path
    seconds: float
    cycles: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    models: list[Path]
    verified: list[Path]
    mlflow_uri: str = ""
    mlflow_url: str = ""
    baseline: dict[str, float] = field(default_factory=dict)
    rlaif: dict[str, Any] = field(default_factory=dict)
    handed_on: Path | None = None
    """The model the last cycle handed on (the chosen cycle's: what RLAIF started from)."""


def run_local(cfg: RunConfig, pipeline_root: str | Path) -> LocalRun:
    """Run the whole cyclic pipeline locally; returns where its outputs are."""
    from kfp import components, local
    from videostar.pipelines.submit import compile_pipeline

    inputs = {"base_model": cfg.pipeline.base_model, "dataset": cfg.pipeline.dataset}
    if cfg.rlaif.sft_model:  # the RLAIF stage alone
        inputs["sft_model"] = cfg.rlaif.sft_model
    for name, value in inputs.items():
        name = f"rlaif.{name}" if name == "sft_model" else f"pipeline.{name}"
        if not value or not Path(value).exists():
            raise ConfigError(f"{name}: {value!r} does not exist (a local run needs a local path)")
    _absolute_local_paths(cfg)
    tracking.check(cfg)
    # shards run side by side: give each its share of the cores instead of oversubscribing them
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // cfg.pipeline.num_shards)))
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    # the compiled YAML, the very file a cluster receives, is what runs (not the Python function)
    package = compile_pipeline(cfg, root / f".pipeline-{os.getpid()}-{time.time_ns()}.yaml")
    pipeline = components.load_component_from_file(str(package))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
               raise_on_error=True)
    log = root / f".run-{os.getpid()}-{time.time_ns()}.log"
    started = time.perf_counter()
    try:
        with _output_to(log) as console, _progress(root, _max_tasks(cfg), console), warm_python():
            pipeline(**{k: str(Path(v).resolve()) for k, v in inputs.items()})
    except Exception as exc:
        raise VideostarError(f"local run failed ({exc}); task logs: {log}; the pipeline that ran: "
                             f"{package}") from exc
    seconds = time.perf_counter() - started
    (run_dir,) = [p for p in root.iterdir() if p not in before and p.is_dir()]
    log.rename(run_dir / "run.log")
    package.rename(run_dir / "pipeline.yaml")
    run = collect(run_dir, seconds)
    run.mlflow_uri = tracking.tracking_uri(cfg.tracking)
    if run.mlflow_uri:  # kfp.local names the run folder as it names the pipeline run
        run.mlflow_url = tracking.ui_url(cfg, run_dir.name)
    return run


def _max_tasks(cfg: RunConfig) -> int:
    """Tasks in the longest run (every cycle runs): the progress bar's total."""
    evaluations = 1 if cfg.evaluate.suites else 0
    rlaif = 3 + evaluations if cfg.rlaif.enabled else 0
    if cfg.rlaif.sft_model:
        return 1 + rlaif
    return 1 + evaluations + cfg.decide.max_cycles * (2 * cfg.pipeline.num_shards + 3 + evaluations) + rlaif


def _absolute_local_paths(cfg: RunConfig) -> None:
    """Steps run in subprocesses: give them absolute paths for the local MLflow store and store."""
    uri = cfg.tracking.mlflow_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        cfg.tracking.mlflow_uri = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    if cfg.tracking.store and "://" not in cfg.tracking.store:
        cfg.tracking.store = str(Path(cfg.tracking.store).resolve())
    for i, suite in enumerate(cfg.evaluate.suites):
        for key, value in suite.data.items():
            if not Path(value).exists():
                raise ConfigError(f"evaluate.suites[{i}].data.{key}: {value!r} does not exist")
            suite.data[key] = str(Path(value).resolve())


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[TextIO]:
    """Send everything written to fds 1 and 2 (the runner's and the tasks' very verbose logs) to
    ``log``; yields a stream to the real stdout for progress."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    try:
        with open(log, "ab") as fh:
            os.dup2(fh.fileno(), 1)
            os.dup2(fh.fileno(), 2)
            yield console
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        console.close()


@contextlib.contextmanager
def _progress(root: Path, total: int, console: TextIO) -> Iterator[None]:
    """A progress bar of finished tasks, read from the executor outputs the runner writes."""
    from tqdm import tqdm

    stop = threading.Event()
    seen = set(root.rglob("executor_output.json"))

    def watch() -> None:
        with tqdm(total=total, desc="pipeline tasks", unit="task", file=console) as bar:
            while not stop.wait(1.0):
                done = set(root.rglob("executor_output.json")) - seen
                if len(done) > bar.n:
                    bar.set_postfix_str(sorted(done, key=lambda p: p.stat().st_mtime)[-1].parent.name)
                    bar.update(len(done) - bar.n)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _outputs(run_dir: Path, name: str) -> list[tuple[Path, Any]]:
    """Every step output named ``name`` (a :mod:`videostar.layout` file) in a run, parsed."""
    return [(p, json.loads(p.read_text())) for p in sorted(run_dir.rglob(name))]


def collect(run_dir: Path, seconds: float = 0.0) -> LocalRun:
    """Each cycle's summary, decision, model and training data, the evaluation scores and the
    RLAIF stage's results, found through the file-layout contract (not through task names)."""
    cycles = sorted(_outputs(run_dir, layout.CYCLE), key=lambda item: item[1]["cycle"])
    summaries = [layout.read_json(p.parent, layout.SUMMARY) for p, _ in cycles]
    decisions = [layout.read_json(p.parent, layout.DECISION) for p, _ in cycles]
    models = [Path(c["model"]) for _, c in cycles]
    verified = [Path(c["training_files"][0]) for _, c in cycles]
    scores = [s for _, s in _outputs(run_dir, layout.SCORES)]
    baseline = next((s["scores"] for s in scores if s["stage"] == layout.BASELINE), {})
    rlaif = collect_rlaif(run_dir)
    rlaif |= next(({"scores": s["scores"]} for s in scores if s["stage"] == layout.RLAIF), {})
    handed_on = cycles[-1][1].get("handed_on") if cycles else None
    return LocalRun(run_dir, seconds, summaries, decisions, models, verified,
                    baseline=baseline, rlaif=rlaif, handed_on=Path(handed_on) if handed_on else None)


RLAIF_STEPS = ("preferences", "reward_model", "ppo", "grpo")
"""The ``step`` named in each RLAIF step's metrics (and its key in :attr:`LocalRun.rlaif`)."""


def collect_rlaif(run_dir: Path) -> dict[str, Any]:
    """The RLAIF stage's metrics and its wall time: from the end of the task before it to the
    end of its last task ({} when the run had no RLAIF stage). A task's folder is the one
    holding its ``out`` folder; it is finished when KFP wrote its ``executor_output.json``."""
    found = {m["step"]: (p, m) for p, m in _outputs(run_dir, layout.METRICS)
             if isinstance(m, dict) and m.get("step") in RLAIF_STEPS}
    if "preferences" not in found:
        return {}
    out: dict[str, Any] = {step: dict(m) for step, (_, m) in found.items()}
    for rl in ("ppo", "grpo"):
        out.get(rl, {}).pop("history", None)
    ours = {p.parent.parent for p, _ in found.values()}
    ours |= {p.parent.parent for p, s in _outputs(run_dir, layout.SCORES) if s["stage"] == layout.RLAIF}
    tasks = {p.parent: p.stat().st_mtime for p in run_dir.rglob("executor_output.json")}
    mine = [m for t, m in tasks.items() if t in ours]
    if mine:
        first = min(mine)
        before = [m for t, m in tasks.items() if t not in ours and m <= first]
        out["seconds"] = max(mine) - (max(before) if before else first)
    return out


def print_report(run: LocalRun) -> None:
    """Yields per cycle and where every output is, as a table."""
    console = terminal.console()
    if run.cycles:
        _print_cycles(run, console)
    if run.rlaif:
        _print_rlaif(run, console)
    if run.mlflow_uri:
        serve = "" if run.mlflow_uri.startswith(("http://", "https://")) else (
            f"  mlflow ui --backend-store-uri {run.mlflow_uri}\n")
        console.print(f"MLflow: {run.mlflow_uri} — compare cycles with\n"
                      f"  videostar --config <run.yaml> compare\n{serve}"
                      f"the cycles in the UI: {run.mlflow_url}", soft_wrap=True)
    console.print(f"outputs: {run.root}  (task logs: {run.root / 'run.log'})")
    for k, (model, verified) in enumerate(zip(run.models, run.verified, strict=False)):
        console.print(f"  cycle {k}: verified answers {_relative(verified, run.root)}, "
                      f"model {_relative(model, run.root)}")


def _print_cycles(run: LocalRun, console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"Video-STaR cycles (whole pipeline: {run.seconds:.0f} s)")
    scores = sorted({k for c in run.cycles for k in c if k.endswith(".accuracy") or k.endswith(".spearman")})
    for col in ("cycle", "questions", "answer yield", "rationalized", "total yield",
                *(k.removeprefix("eval.") for k in scores), "next"):
        table.add_column(col, justify="right")
    if run.baseline:
        table.add_row("base", "", "", "", "",
                      *(f"{run.baseline[k]:.3f}" if k in run.baseline else "-" for k in scores), "")
    for summary, decision in zip(run.cycles, run.decisions, strict=True):
        table.add_row(str(summary["cycle"]), str(summary["questions"]),
                      f"{summary['answer_yield']:.3f}", f"{summary['rationalization_yield']:.3f}",
                      f"{summary['total_yield']:.3f}",
                      *(f"{summary[k]:.3f}" if summary.get(k) is not None else "-" for k in scores),
                      "continue" if decision["continue"] else "stop")
    console.print(table)
    if run.decisions:
        last = run.decisions[-1]
        chosen = f"; handed on: cycle {last['chosen']}" if "chosen" in last else ""
        console.print(f"stopped after cycle {len(run.decisions) - 1}: {last['reason']}{chosen}")


def _print_rlaif(run: LocalRun, console: Any) -> None:
    """What the RLAIF stage produced and added to the run's time."""
    from rich.table import Table

    r = run.rlaif
    table = Table(title=f"VLM-RLAIF ({r.get('seconds', 0):.0f} s)", show_header=False)
    prefs, rm = r.get("preferences", {}), r.get("reward_model", {})
    sampled = prefs.get("prompts", 0) * prefs.get("pairs_per_prompt", 1)
    table.add_row("preference pairs", f"{prefs.get('kept', 0)} of {sampled} sampled from "
                  f"{prefs.get('prompts', 0)} prompts (judge: {prefs.get('judge')}; "
                  f"{prefs.get('identical', 0)} identical, {prefs.get('disagreed', 0)} without a verdict)")
    if rm.get("heldout_accuracy") is not None:
        table.add_row("reward model", f"held-out pairwise accuracy {rm['heldout_accuracy']:.3f} "
                      f"on {rm['heldout_pairs']} pairs")
    for name in ("ppo", "grpo"):
        if rl := r.get(name):
            table.add_row(name.upper(), f"{rl['steps']} steps; held-out reward "
                          f"{rl['heldout_reward_before']:.3f} -> {rl['heldout_reward_after']:.3f}; "
                          f"final KL {rl['final_kl']:.3f}")
    chosen = run.decisions[-1].get("chosen", len(run.cycles) - 1) if run.decisions else -1
    start = run.cycles[chosen] if run.cycles else {}
    for key, value in sorted(r.get("scores", {}).items()):
        was = f" (cycle {chosen} {start[key]:.3f})" if key in start else ""
        table.add_row(key.removeprefix("eval."), f"{value:.3f}{was}")
    console.print(table)


def _relative(path: Path, root: Path) -> Path:
    return path.relative_to(root) if path.is_relative_to(root) else path
