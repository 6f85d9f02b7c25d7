"""Time the README's two commands the way the README states them: wall time, CPU time and load average.

    python3 scripts/time_readme.py VENV_DIR [--steps setup,bench,tests] [--bench-out DIR]

Steps, each run from the repository root: ``setup`` (``bash scripts/setup.sh VENV_DIR``, VENV_DIR must not exist yet),
``bench`` (``VENV_DIR/bin/litelvlm bench --quick --out DIR``), ``tests`` (``VENV_DIR/bin/python -m pytest -q``).
For each: wall time, CPU time (user + system of every process of the step that was waited for: the whole tree),
and the 1-minute load average before and after, on this machine's cores. Standard library only (it runs before the
venv exists). Stops at the first step that fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ("setup", "bench", "tests")


def readme_commands(venv: str, bench_out: str) -> dict[str, list[str]]:
    """The README's commands with ``venv`` as the virtual environment, by step."""
    return {"setup": ["bash", "scripts/setup.sh", venv],
            "bench": [f"{venv}/bin/litelvlm", "bench", "--quick", "--out", bench_out],
            "tests": [f"{venv}/bin/python", "-m", "pytest", "-q"]}


def measure(command: list[str], cwd: Path = REPO) -> dict:
    """Run ``command`` (output passed through); its exit code, wall and CPU seconds, load averages around it."""
    load_before = os.getloadavg()[0]
    used_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    code = subprocess.run(command, cwd=cwd).returncode
    wall = time.monotonic() - start
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"command": command, "returncode": code, "wall_s": wall, "user_s": used.ru_utime - used_before.ru_utime,
            "sys_s": used.ru_stime - used_before.ru_stime, "load_before": load_before, "load_after": os.getloadavg()[0]}


def describe(step: str, m: dict) -> str:
    """One line: the step's wall and CPU minutes and the load around it."""
    cpu = m["user_s"] + m["sys_s"]
    return (f"{step}: {m['wall_s'] / 60:.1f} min wall, {cpu / 60:.1f} min CPU (user {m['user_s'] / 60:.1f} + sys "
            f"{m['sys_s'] / 60:.1f}), load average {m['load_before']:.1f} -> {m['load_after']:.1f} on {os.cpu_count()} "
            f"cores, exit {m['returncode']}")


def machine() -> str:
    """The CPU model and core count."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else platform.machine()
    return f"{model}, {os.cpu_count()} cores"


def _steps(value: str) -> list[str]:
    steps = [s for s in value.split(",") if s]
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        raise argparse.ArgumentTypeError(f"unknown step {', '.join(unknown) or value!r}: choose from {', '.join(STEPS)}")
    return steps


def check_venv(venv: Path, steps: list[str]) -> str | None:
    """Why ``venv`` does not suit ``steps`` (None when it does)."""
    if "setup" in steps and venv.exists():
        return f"{venv} exists: pass a new folder, setup is timed in a fresh virtual environment"
    if "setup" not in steps and not (venv / "bin" / "python").exists():
        return f"{venv} has no bin/python: add the setup step or pass a venv made by scripts/setup.sh"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("venv", help="virtual environment folder (new when timing setup)")
    parser.add_argument("--steps", type=_steps, default=list(STEPS), help="comma-separated: setup,bench,tests (default: all)")
    parser.add_argument("--bench-out", default="out/bench", help="the bench's --out folder (default: out/bench)")
    args = parser.parse_args(argv)
    venv = Path(args.venv).resolve()
    problem = check_venv(venv, args.steps)
    if problem:
        print(f"time_readme: {problem}", file=sys.stderr)
        return 2
    commands = readme_commands(str(venv), args.bench_out)
    lines, status = [], 0
    for step in args.steps:
        print(f"== {step}: {' '.join(commands[step])}", flush=True)
        measured = measure(commands[step])
        lines.append(describe(step, measured))
        print(lines[-1], flush=True)
        if measured["returncode"] != 0:
            status = 1
            break
    print(f"\nREADME timings on {machine()}:")
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main())
