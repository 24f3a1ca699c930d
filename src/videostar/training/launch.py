"""How a training step runs: here, under ``torchrun``, or as a Kubeflow TrainJob; its command
line, built once.

:func:`run` is the one place that decides, from the step's ``pipeline.<step>.launcher``: a
``local`` step (or one of torchrun's workers) trains in this process; a ``torchrun`` one runs
the very CLI command of the step under ``torchrun`` (every rank runs ``videostar <step>`` with
the same arguments and the run's configuration, a YAML file; rank 0 logs to MLflow and writes
the model and the metrics where the step's outputs expect them); a ``trainjob`` one runs the
same command on every node of a Kubeflow Trainer ``TrainJob`` (:mod:`videostar.training.trainjob`).

:class:`SftStep`, :class:`RewardModelStep` and :class:`PPOStep` are a step's typed inputs;
:func:`step_argv` is the one place their ``videostar`` command line is written, and
:func:`training_command` the one place a launcher's command around it is: ``torchrun`` here,
``torchrun`` or ``mpirun`` on a TrainJob's nodes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from videostar.config import RunConfig, StepResources, config_to_json
from videostar.config.platform import Launcher
from videostar.errors import VideostarError
from videostar.layout import METRICS
from videostar.training import distributed, trainjob


@dataclass(frozen=True)
class SftStep:
    """``videostar sft``: train ``base`` on ``data`` into ``model_out``/``metrics_out``, logged
    under ``cycle``'s run of the pipeline's parent MLflow run (none: ``parent_run`` empty)."""

    base: str | Path
    data: Sequence[str | Path]
    model_out: str | Path
    metrics_out: str | Path
    parent_run: str = ""
    cycle: int = 0
    name: ClassVar[str] = "sft"
    """Its ``videostar`` command."""
    section: ClassVar[str] = "sft"
    """Its ``pipeline`` section: the launcher and resources."""
    inputs: ClassVar[tuple[str, ...]] = ("base", "data")
    """The fields a TrainJob stages on the shared volume."""


@dataclass(frozen=True)
class RewardModelStep:
    """``videostar reward-model``: the reward model on ``preferences`` from the SFT ``model`` (an
    adapter on ``base``) into ``model_out``/``metrics_out``, logged under the RLAIF run of
    ``parent_run``."""

    model: str | Path
    preferences: str | Path
    model_out: str | Path
    metrics_out: str | Path
    base: str | Path | None = None
    parent_run: str = ""
    name: ClassVar[str] = "reward-model"
    section: ClassVar[str] = "reward_model"
    inputs: ClassVar[tuple[str, ...]] = ("model", "preferences", "base")
    cycle: ClassVar[int | None] = None
    """Once per pipeline run, not per cycle (its TrainJob's name)."""


@dataclass(frozen=True)
class PPOStep:
    """``videostar ppo``: PPO of the SFT ``model`` (an adapter on ``base``) against
    ``reward_model`` on the prompts of ``records`` (``preferences``' split names the held-out
    videos), the policy into ``model_out``; its checkpoints go beside ``metrics_out`` (a
    replacement TrainJob finds them on the shared volume), logged under the RLAIF run of
    ``parent_run``."""

    model: str | Path
    reward_model: str | Path
    records: str | Path
    preferences: str | Path
    model_out: str | Path
    metrics_out: str | Path
    base: str | Path | None = None
    parent_run: str = ""
    fresh: bool = False
    """Discard checkpoints of other work beside ``metrics_out`` instead of refusing."""
    name: ClassVar[str] = "ppo"
    section: ClassVar[str] = "ppo"
    inputs: ClassVar[tuple[str, ...]] = ("model", "reward_model", "records", "preferences", "base")
    cycle: ClassVar[int | None] = None


TrainingStep = SftStep | RewardModelStep | PPOStep


def step_argv(step: TrainingStep) -> list[str]:
    """``[<step>, <options>...]``: the ``videostar`` command line of ``step``, the one build every
    launcher runs (:func:`training_command`); ``videostar``'s parser reads it back into the same
    values. An empty ``parent_run`` (tracking off) and a missing ``base`` are left out: the
    parser's defaults."""
    if isinstance(step, SftStep):
        args = ["--base-model", step.base, "--data", *step.data, "--cycle", step.cycle]
    elif isinstance(step, RewardModelStep):
        args = ["--model", step.model, "--preferences", step.preferences,
                *(["--adapter-base", step.base] if step.base else [])]
    elif isinstance(step, PPOStep):
        args = ["--model", step.model, "--reward-model", step.reward_model, "--records", step.records,
                "--preferences", step.preferences, *(["--adapter-base", step.base] if step.base else []),
                *(["--fresh"] if step.fresh else [])]
    else:
        raise TypeError(f"not a training step: {step!r}")
    args += ["--model-out", step.model_out, "--metrics-out", step.metrics_out]
    if step.parent_run:
        args += ["--parent-run", step.parent_run]
    return [step.name, *map(str, args)]


MPI_HOSTFILE = "/etc/mpi/hostfile"
"""Where the Trainer's ``deepspeed-distributed`` (MPI) runtime mounts the hosts and slots."""


def training_command(step: TrainingStep, launcher: Launcher, config: str | Path) -> list[str]:
    """``<launcher> ... -m videostar.cli --config <config>`` + :func:`step_argv` for ``launcher``.

    ``torchrun``: one node (``--standalone``: a rendezvous on this machine), this interpreter's
    ``torch.distributed.run`` so the workers use the step's own environment. ``trainjob`` on
    ``torch-distributed``: the image's ``torchrun`` with ``--nnodes``/``--nproc-per-node``; the
    rendezvous (master address and port, node rank) comes from the ``PET_*`` environment the
    Trainer runtime sets. ``trainjob`` on ``deepspeed-distributed`` (MPI): ``mpirun`` on the
    launcher pod, the hosts and slots from the hostfile the Trainer mounts.
    """
    if launcher.kind == "torchrun":
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                "--nproc-per-node", str(launcher.procs_per_node)]
    elif launcher.kind == "trainjob" and launcher.runtime == "deepspeed-distributed":
        head = ["mpirun", "--hostfile", MPI_HOSTFILE, "python"]
    elif launcher.kind == "trainjob":
        head = ["torchrun", "--nnodes", str(launcher.num_nodes),
                "--nproc-per-node", str(launcher.procs_per_node)]
    else:
        raise ValueError(f"launcher {launcher.kind!r} runs in-process, not as a command")
    return [*head, "-m", "videostar.cli", "--config", str(config), *step_argv(step)]


def delegates(launcher: Launcher) -> bool:
    """Whether a step with ``launcher`` hands its work to ``torchrun`` (not when it already is
    one of torchrun's workers)."""
    return launcher.kind == "torchrun" and not distributed.in_worker()


def run_torchrun(step: TrainingStep, launcher: Launcher, cfg: RunConfig) -> None:
    """Run ``step`` under ``torchrun`` on this machine, its output streamed into ours; a failure
    raises with the exit status and the last line the workers printed."""
    with tempfile.TemporaryDirectory(prefix="videostar-launch-") as tmp:
        config = Path(tmp) / "config.yaml"  # YAML: PyYAML reads JSON's 1e-05 as a string
        config.write_text(yaml.safe_dump(json.loads(config_to_json(cfg))))
        cmd = training_command(step, launcher, config)
        print(f"launch: {shlex.join(cmd)}", file=sys.stderr, flush=True)
        tail: deque[str] = deque(maxlen=50)
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stderr.write(line)
                if line.strip():
                    tail.append(line.strip())
            status = proc.wait()
    if status:
        # the workers' own one-line error when there is one, not torchrun's report after it
        ours = [line for line in tail if line.startswith(("error:", "config error:"))]
        last = (ours or list(tail) or ["no output"])[-1]
        raise VideostarError(f"{step.name}: torchrun exited with status {status} (last line: {last})")


def resources(step: TrainingStep, cfg: RunConfig) -> StepResources:
    """``pipeline.<step>``: where the step runs and with what."""
    return getattr(cfg.pipeline, step.section)


def run(step: TrainingStep, cfg: RunConfig, here: Callable[[], dict[str, Any]], pipeline_run: str = ""
        ) -> dict[str, Any]:
    """Run ``step`` where its launcher says and return its metrics: ``here()`` trains in this
    process (``local``, or as one of torchrun's workers); ``torchrun`` and ``trainjob`` (named
    after ``pipeline_run``) run its command and read back the metrics it wrote."""
    launcher = resources(step, cfg).launcher
    if launcher.kind == "trainjob":
        run_trainjob(step, cfg, pipeline_run)
    elif delegates(launcher):
        run_torchrun(step, launcher, cfg)
    else:
        return here()
    return json.loads(Path(step.metrics_out).read_text())


def _staged(step: TrainingStep, folder: trainjob.JobFolder, inputs: dict[str, Any]) -> TrainingStep:
    """``step`` on a TrainJob: its inputs where ``folder`` stages them, its outputs in ``out/``."""
    staged = folder.staged(inputs)
    return dataclasses.replace(step, **{k: staged[k] for k in inputs},
                               model_out=folder.out / trainjob.MODEL, metrics_out=folder.out / METRICS)


def _job(step: TrainingStep, cfg: RunConfig, pipeline_run: str, inputs: dict[str, Any]
         ) -> tuple[StepResources, str, trainjob.JobFolder, dict[str, Any]]:
    """The TrainJob of ``step`` in ``pipeline_run`` (its resources, name and folder), without
    staging anything."""
    res = resources(step, cfg)
    name = trainjob.job_name(step.name, pipeline_run, step.cycle)
    folder = trainjob.job_folder(cfg, name)
    command = training_command(_staged(step, folder, inputs), res.launcher, folder.config)
    return res, name, folder, trainjob.step_job(cfg, res, name, folder, command, step.name)


def run_trainjob(step: TrainingStep, cfg: RunConfig, pipeline_run: str, **kw: Any) -> None:
    """Run ``step`` as the Kubeflow TrainJob of ``pipeline_run`` (and its cycle): its inputs
    staged on the shared volume, its ``out/`` copied to the step's own outputs. The job's rank 0
    logs as an in-process step does. ``kw``: :func:`videostar.training.trainjob.run_job`'s."""
    inputs = {k: v if isinstance(v, str | Path) else [str(x) for x in v]
              for k in step.inputs if (v := getattr(step, k)) is not None}
    res, name, folder, job = _job(step, cfg, pipeline_run, inputs)
    trainjob.run_job(cfg, res, name, folder, inputs, job,
                     {trainjob.MODEL: step.model_out, METRICS: step.metrics_out}, **kw)


def sft_trainjob(cfg: RunConfig, pipeline_run: str, cycle: int, parent_run: str = "") -> dict[str, Any]:
    """The TrainJob a cycle's SFT creates (its training files: the verified answers and one
    rationale file per shard), without staging anything: the committed example."""
    step = SftStep("base", ["verified.jsonl"] * (1 + cfg.pipeline.num_shards), "", "", parent_run, cycle)
    return _job(step, cfg, pipeline_run, {"base": step.base, "data": list(step.data)})[3]
