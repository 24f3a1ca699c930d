"""The warm local runner: kfp.local tasks forked from a process that imported the stack.
(No ``from __future__ import annotations``: KFP reads the components' annotations.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kfp import dsl, local
from videostar.pipelines import preload

PYTHON = sys.executable  # warm_runner swaps sys.executable for the client while a test runs


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def probe(tag: str, out: dsl.Output[dsl.Dataset]):
    import json
    import os
    import sys

    warm = "transformers" in sys.modules  # a cold executor_main has imported kfp, not this
    with open(out.path, "w") as fh:
        json.dump({"tag": tag, "pid": os.getpid(), "ppid": os.getppid(), "warm": warm,
                   "env": os.environ.get("PROBE_VALUE"), "threads": os.environ.get("OMP_NUM_THREADS")}, fh)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def fail(message: str):
    raise ValueError(message)


@pytest.fixture(scope="module")
def warm_server():
    """One warm server for this module's tests (each start imports the whole stack: seconds);
    between the tests that use it, ``sys.executable`` is the real interpreter again."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PROBE_VALUE", "from-the-parent")
        env.setenv("OMP_NUM_THREADS", "1")
        with preload.warm_python() as python:
            assert python != PYTHON, "the warm server did not start"
            assert sys.executable == python  # what SubprocessRunner(use_venv=False) runs
            sys.executable = PYTHON
            yield python
    assert sys.executable == PYTHON


@pytest.fixture()
def warm_runner(warm_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PROBE_VALUE", "from-the-parent")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(sys, "executable", warm_server)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True)
    yield warm_server


def test_tasks_fork_from_the_warm_server_one_process_each(warm_runner: str, tmp_path: Path):
    first, second = probe(tag="a"), probe(tag="b")
    seen = [json.loads(Path(t.outputs["out"].path).read_text()) for t in (first, second)]
    assert [s["tag"] for s in seen] == ["a", "b"]
    assert all(s["warm"] for s in seen)
    assert seen[0]["pid"] != seen[1]["pid"] and seen[0]["ppid"] == seen[1]["ppid"] != os.getpid()
    assert {s["env"] for s in seen} == {"from-the-parent"} and {s["threads"] for s in seen} == {"1"}


def test_a_failing_task_fails_the_run_with_its_traceback(warm_runner: str, capfd):
    with pytest.raises(RuntimeError):
        fail(message="bad input in the task")
    assert "ValueError: bad input in the task" in capfd.readouterr().out


def test_other_commands_run_the_real_interpreter(warm_runner: str):
    done = subprocess.run([warm_runner, "-c", "import sys; print(sys.executable); sys.exit(3)"],
                          capture_output=True, text=True)
    assert done.returncode == 3 and done.stdout.strip() == PYTHON


def test_without_a_server_the_task_starts_cold(tmp_path: Path):
    client = tmp_path / "python"
    client.write_text(preload.CLIENT.format(python=sys.executable, sock=str(tmp_path / "gone.sock"),
                                            executor=preload.EXECUTOR, header=preload.HEADER))
    client.chmod(0o755)
    done = subprocess.run([str(client), "-m", "kfp.dsl.executor_main", "--help"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "--executor_input" in done.stdout


def test_off_switch(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VIDEOSTAR_PRELOAD", "0")
    with preload.warm_python() as python:
        assert python == sys.executable


@pytest.mark.slow  # a kill and a wait for the orphaned server to go: the CI tier
def test_the_server_goes_when_its_run_is_killed(tmp_path: Path):
    """A run killed by a signal runs no ``finally``: the server notices its parent is gone."""
    import signal
    import time

    script = ("import sys, time\nfrom videostar.pipelines import preload\n"
              "with preload.warm_python() as python:\n    print(python, flush=True)\n    time.sleep(120)\n")
    run = subprocess.Popen([PYTHON, "-c", script], stdout=subprocess.PIPE, text=True)
    client = run.stdout.readline().strip()
    sock = str(Path(client).parent / "server.sock")
    servers = [p for p in Path("/proc").iterdir() if p.name.isdigit()
               and sock in (p / "cmdline").read_bytes().decode(errors="replace")]
    assert len(servers) == 1, servers

    def alive() -> bool:  # a reaped process has no /proc entry, a zombie an empty command line
        try:
            return sock in (servers[0] / "cmdline").read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return False

    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 30
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(), "the warm server outlived its run"


def test_a_broken_request_costs_nothing_but_itself(warm_runner: str):
    """A client that dies mid-request leaves the server serving the next task."""
    import socket

    conn = socket.socket(socket.AF_UNIX)
    conn.connect(str(Path(warm_runner).parent / "server.sock"))
    socket.send_fds(conn, [(1000).to_bytes(preload.HEADER, "big")], [0, 1, 2])
    conn.sendall(b'{"argv": [')  # then gone
    conn.close()
    after = json.loads(Path(probe(tag="after").outputs["out"].path).read_text())
    assert after["warm"]  # a crashed server would have let it start cold
