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


def _time_readme():
    import importlib.util

    spec = importlib.util.spec_from_file_location("time_readme", REPO / "scripts" / "time_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_time_readme_runs_the_readmes_commands():
    import shlex

    block = (REPO / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    readme = [shlex.split(part) for line in block for part in line.split(" && ")]
    commands = _time_readme().readme_commands(".venv", "out/bench")
    assert commands["setup"] == [*readme[0], ".venv"]  # setup.sh's default folder, named
    assert [commands["bench"], commands["tests"]] == readme[1:]


def test_time_readme_counts_the_cpu_time_of_the_whole_process_tree():
    grandchild = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'sum(i * i for i in range(3_000_000))'])"
    measured = _time_readme().measure([sys.executable, "-c", grandchild])
    assert measured["returncode"] == 0 and measured["user_s"] + measured["sys_s"] > 0.1  # the grandchild's work counts
    assert measured["wall_s"] > 0 and measured["load_before"] >= 0 and measured["load_after"] >= 0


def test_time_readme_refuses_a_venv_that_does_not_suit_the_steps(tmp_path):
    for argv, message in [([str(tmp_path)], "exists: pass a new folder"),
                          ([str(tmp_path / "none"), "--steps", "bench"], "has no bin/python")]:
        done = subprocess.run([sys.executable, "scripts/time_readme.py", *argv], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_sam2_budget_rows_refuses_bad_arguments_before_building_a_model(tmp_path):
    """scripts/sam2_budget_rows.py (docs/benchmarks.md's SAM2 budget rows): an existing --out, no rounds or a budget
    beyond SAM2's 4,096 memory tokens stop it in one usage line, before any import of the model code."""
    taken = tmp_path / "rows.json"
    taken.write_text("{}")
    script = str(REPO / "scripts" / "sam2_budget_rows.py")
    for extra, words in ((["--out", str(taken)], "exists"), (["--out", str(tmp_path / "a.json"), "--rounds", "0"], "--rounds"),
                         (["--out", str(tmp_path / "b.json"), "--memory-budget", "5000"], "--memory-budget")):
        done = subprocess.run([sys.executable, script, "disc", *extra], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert taken.read_text() == "{}" and not (tmp_path / "a.json").exists()
