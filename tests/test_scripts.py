"""The shell scripts work as the README shows them: from a fresh clone, no virtual environment activated."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BARE = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # no venv on PATH, no PYTHON, no PYTHONPATH


@pytest.mark.skipif(Path(sys.prefix).resolve() != (REPO / ".venv").resolve(), reason="needs the repository's .venv (scripts/setup.sh)")
def test_launcher_uses_the_repository_venv_without_activation():
    done = subprocess.run(["bash", "scripts/launch_module.sh", "sysconfig"], cwd=REPO, env=BARE, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert str((REPO / ".venv").resolve()) in done.stdout


def test_missing_interpreter_is_named():
    done = subprocess.run(["bash", "scripts/launch_module.sh", "eval.refseg", "--help"], cwd=REPO,
                          env={**BARE, "PYTHON": "/nowhere/python"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "python interpreter '/nowhere/python' not found" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
