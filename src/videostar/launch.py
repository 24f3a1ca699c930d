"""How a training step runs past one process: the ``torchrun`` command, and running it here.

A training step (sft, reward) whose launcher is ``torchrun`` runs the very CLI command of the
step under ``torchrun`` instead of in its own process: every rank runs ``videostar <step>``
with the same arguments and the run's configuration (a YAML file), rank 0 writes the model
and the metrics where the step's outputs expect them. A ``trainjob`` launcher runs the same
command on every node of a Kubeflow Trainer ``TrainJob``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path

import yaml

from videostar import distributed
from videostar.config import RunConfig, config_to_json
from videostar.config.platform import Launcher
from videostar.errors import VideostarError


def training_command(step: str, cli_args: list[str], launcher: Launcher, config: str | Path
                     ) -> list[str]:
    """``torchrun ... -m videostar.cli --config <config> <step> <cli_args>`` for ``launcher``.

    ``torchrun``: one node (``--standalone``: a rendezvous on this machine), this interpreter's
    ``torch.distributed.run`` so the workers use the step's own environment. ``trainjob``: the
    image's ``torchrun`` with ``--nnodes``/``--nproc-per-node``; the rendezvous (master address
    and port, node rank) comes from the ``PET_*`` environment the Trainer runtime sets.
    """
    if launcher.kind == "torchrun":
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1"]
    elif launcher.kind == "trainjob":
        head = ["torchrun", "--nnodes", str(launcher.num_nodes)]
    else:
        raise ValueError(f"launcher {launcher.kind!r} runs in-process, not as a command")
    return [*head, "--nproc-per-node", str(launcher.procs_per_node), "-m", "videostar.cli",
            "--config", str(config), step, *map(str, cli_args)]


def delegates(launcher: Launcher) -> bool:
    """Whether a step with ``launcher`` hands its work to ``torchrun`` (not when it already is
    one of torchrun's workers)."""
    return launcher.kind == "torchrun" and not distributed.in_worker()


def run_torchrun(step: str, cli_args: list[str], launcher: Launcher, cfg: RunConfig) -> None:
    """Run the step under ``torchrun`` on this machine, its output streamed into ours; a failure
    raises with the exit status and the last line the workers printed."""
    with tempfile.TemporaryDirectory(prefix="videostar-launch-") as tmp:
        config = Path(tmp) / "config.yaml"  # YAML: PyYAML reads JSON's 1e-05 as a string
        config.write_text(yaml.safe_dump(json.loads(config_to_json(cfg))))
        cmd = training_command(step, cli_args, launcher, config)
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
        raise VideostarError(f"{step}: torchrun exited with status {status} (last line: {last})")
