"""Run the cluster pipeline on this machine through ``kfp.local`` and read back its results.

The very pipeline definition users submit runs here, each step in a subprocess of the
current Python environment (``SubprocessRunner(use_venv=False)``); Kubernetes-only settings
(accelerators, node selectors, secrets) are ignored by the local runner.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videostar.config import RunConfig
from videostar.errors import ConfigError


@dataclass
class LocalRun:
    """Where a local run wrote its outputs, and each cycle's summary."""

    root: Path
    seconds: float
    cycles: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    models: list[Path]


def run_local(cfg: RunConfig, pipeline_root: str | Path) -> LocalRun:
    """Run the whole cyclic pipeline locally; returns where its outputs are."""
    from kfp import local

    from videostar.pipelines.cyclic import build_pipeline

    for field, value in (("pipeline.base_model", cfg.pipeline.base_model),
                         ("pipeline.dataset", cfg.pipeline.dataset)):
        if not value or not Path(value).exists():
            raise ConfigError(f"{field}: {value!r} does not exist (a local run needs a local path)")
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
               raise_on_error=True)
    started = time.perf_counter()
    build_pipeline(cfg)(base_model=str(Path(cfg.pipeline.base_model).resolve()),
                        dataset=str(Path(cfg.pipeline.dataset).resolve()))
    seconds = time.perf_counter() - started
    (run_dir,) = [p for p in root.iterdir() if p not in before and p.is_dir()]
    return collect(run_dir, seconds)


def collect(run_dir: Path, seconds: float = 0.0) -> LocalRun:
    """Each cycle's summary, decision and model folder from a local run's task folders."""
    summaries = sorted(run_dir.glob("*/out/summary.json"),
                       key=lambda p: json.loads(p.read_text())["cycle"])
    cycles = [json.loads(p.read_text()) for p in summaries]
    decisions = [json.loads((p.parent / "decision.json").read_text()) for p in summaries]
    models = sorted(run_dir.glob("*/model/videostar_model.json"), key=lambda p: p.stat().st_mtime)
    return LocalRun(run_dir, seconds, cycles, decisions, [m.parent for m in models])
