"""Start ``kfp.local``'s task processes warm: forked from one process that imported the stack.

Every task of a local run is a new Python process, and before it does any work it spends about
4 s importing torch, transformers and the model classes (transformers pulls in torchvision and
``torch._dynamo``), mlflow and kfp: two minutes of a 30-task demo. Here one server process
imports all of that once; the runner's ``python`` becomes a small client that hands the server
its arguments, environment, working directory and stdio, and the server forks a child that
runs ``kfp.dsl.executor_main`` exactly as the plain process would. Each task is still its own
process (its own memory, its own exit code), and the pipeline is unchanged: on a cluster every
task runs in its own container as before.

Python's ``multiprocessing`` forkserver preloads modules the same way but only runs Python
callables of the parent; KFP's runner executes a shell command, so the stand-in is a process.
Anything other than ``-m kfp.dsl.executor_main`` (a pip install, say), or a server that is
gone, runs the real interpreter instead. ``VIDEOSTAR_PRELOAD=0`` turns it off.

The server imports only: it runs no torch op, so no OpenMP thread pool exists when it forks.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import random
import runpy
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

MODULES = (
    "torch", "numpy", "transformers", "peft", "mlflow", "kfp.dsl.executor_main",
    "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl",
    "transformers.models.qwen2_5_vl.processing_qwen2_5_vl",
    "transformers.models.qwen2_vl.video_processing_qwen2_vl",
    "transformers.models.qwen2_vl.image_processing_qwen2_vl_fast",
    "videostar.model", "videostar.video", "videostar.tracking", "videostar.star.steps",
    "videostar.rlaif.steps", "videostar.components.runtime",
)
"""What the steps import. A module missing here is imported by the task itself, as before."""

EXECUTOR = ["-m", "kfp.dsl.executor_main"]
HEADER = 8  # bytes of the payload length, sent with the client's stdio descriptors

CLIENT = '''#!{python} -IS
# The python of videostar's warm local runner (videostar.pipelines.preload): the standard
# library only, so it starts in milliseconds.
import json, os, socket, sys
real, args = {python!r}, sys.argv[1:]
if args[:2] != {executor!r}:
    os.execv(real, [real, *args])
try:
    conn = socket.socket(socket.AF_UNIX)
    conn.connect({sock!r})
except OSError:
    os.execv(real, [real, *args])
payload = json.dumps({{"argv": args[2:], "env": dict(os.environ), "cwd": os.getcwd()}}).encode()
socket.send_fds(conn, [len(payload).to_bytes({header}, "big")], [0, 1, 2])
conn.sendall(payload)
status = b""
while len(status) < 4:
    chunk = conn.recv(4 - len(status))
    if not chunk:
        sys.exit("videostar preload: the server went away before the task finished")
    status += chunk
sys.exit(int.from_bytes(status, "big", signed=True))
'''


def enabled() -> bool:
    return os.environ.get("VIDEOSTAR_PRELOAD", "1") != "0"


@contextlib.contextmanager
def warm_python(timeout: float = 120.0) -> Iterator[str]:
    """While inside, ``kfp.local.SubprocessRunner(use_venv=False)`` starts its tasks warm: it runs
    ``sys.executable``, which points at the client while the server runs. Yields that path
    (``sys.executable`` itself when off or when the server did not start). The server starts
    with this process's environment (its ``OMP_NUM_THREADS`` included) and is stopped, with any
    task it still runs, on exit."""
    if not enabled():
        yield sys.executable
        return
    real = sys.executable
    folder = Path(tempfile.mkdtemp(prefix="videostar-preload-"))
    sock = folder / "server.sock"
    server = subprocess.Popen([real, "-m", "videostar.pipelines.preload", str(sock)])
    try:
        deadline = time.monotonic() + timeout
        while not sock.exists() and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if not sock.exists():
            print(f"videostar preload: the warm server did not start (exit {server.poll()}); "
                  "tasks start cold", file=sys.stderr)
            yield real
            return
        client = folder / "python"
        client.write_text(CLIENT.format(python=real, sock=str(sock), executor=EXECUTOR, header=HEADER))
        client.chmod(0o755)
        sys.executable = str(client)
        yield str(client)
    finally:
        sys.executable = real
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def serve(sock: str) -> None:
    """Import :data:`MODULES`, then fork one child per client until terminated, or until the
    process that started it is gone (a run killed by a signal runs no ``finally``)."""
    import signal

    for name in MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(sock + ".tmp")
    listener.listen(8)
    os.rename(sock + ".tmp", sock)  # the socket appears only once the server accepts
    children: dict[int, socket.socket] = {}

    def stop(*_: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    parent = os.getppid()
    while True:
        if os.getppid() != parent:  # the run was killed before it could stop us: do not linger
            stop()
        ready, _, _ = select.select([listener], [], [], 0.05)
        if ready:
            conn, _ = listener.accept()
            pid = _fork_task(conn, listener)
            if pid is None:
                conn.close()
            else:
                children[pid] = conn
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                conn = children.pop(pid)
                code = os.waitstatus_to_exitcode(status)
                with contextlib.suppress(OSError):
                    conn.sendall((128 - code if code < 0 else code).to_bytes(4, "big", signed=True))
                conn.close()


def _fork_task(conn: socket.socket, listener: socket.socket) -> int | None:
    """Read one client's request and fork its task; the child never returns."""
    header, fds, _, _ = socket.recv_fds(conn, HEADER, 3)
    if len(header) != HEADER or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return None
    size, payload = int.from_bytes(header, "big"), b""
    while len(payload) < size:
        chunk = conn.recv(size - len(payload))
        if not chunk:
            break
        payload += chunk
    try:
        request = json.loads(payload)
    except ValueError:  # a client that went away mid-request: nothing to run
        request = None
    if not isinstance(request, dict):
        for fd in fds:
            os.close(fd)
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        return pid
    code = 1
    try:
        listener.close()
        conn.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        code = _run_executor(request)
    except BaseException:  # the child reports and exits whatever happened; it never returns
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run_executor(request: dict) -> int:
    """What ``python -m kfp.dsl.executor_main ARGS`` does in a fresh process, from the request's
    directory and environment. Fresh-process state the imports may have touched is reset: the
    unseeded random generators, and torch's thread count (OpenMP read ``OMP_NUM_THREADS`` when
    the server loaded it)."""
    import numpy as np
    import torch

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    random.seed()
    np.random.seed()
    torch.manual_seed(torch.initial_seed())
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    sys.argv = ["executor_main", *request["argv"]]
    try:
        runpy.run_module("kfp.dsl.executor_main", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    serve(sys.argv[1])
