"""How a training step runs past one process: its command line, built once, and running it here.

A training step (sft, reward) whose launcher is ``torchrun`` runs the very CLI command of the
step under ``torchrun`` instead of in its own process: every rank runs ``videostar <step>``
with the same arguments and the run's configuration (a YAML file), rank 0 logs to MLflow and
writes the model and the metrics where the step's outputs expect them. A ``trainjob`` launcher
runs the same command on every node of a Kubeflow Trainer ``TrainJob``.

:class:`SftStep` and :class:`RewardModelStep` are a step's typed inputs; :func:`step_argv` is the one
place their ``videostar`` command line is written, and :func:`training_command` the one place
a launcher's command around it is: ``torchrun`` here, ``torchrun`` or ``mpirun`` on a TrainJob's
nodes (:mod:`videostar.training.trainjob`).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import yaml

from videostar.config import RunConfig, config_to_json
from videostar.config.platform import Launcher
from videostar.errors import VideostarError
from videostar.training import distributed


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


TrainingStep = SftStep | RewardModelStep


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
