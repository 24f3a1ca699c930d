"""The command as a process (``python -m videostar.cli``, what launchers run on every rank): its
exit code. Not in the fast tier: the process imports the whole stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_console_script_exit_code(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text(": not yaml : [")
    proc = subprocess.run([sys.executable, "-m", "videostar.cli", "--config", str(path),
                           "decide", "--history", "x"], capture_output=True, text=True)
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr
