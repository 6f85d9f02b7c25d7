"""The sweep's clock: ``cpu`` (the process's CPU time with torch on one thread, as ``litelvlm bench`` measures on a
CPU, so that other processes competing for the cores barely change a time) or ``wall`` (wall time; on CUDA after
synchronising, as ``litelvlm.timing`` does). ``cpu`` is the default on a CPU, ``wall`` on CUDA, where CPU time would
miss the GPU's work. Each run pins its clock in its records' meta, and a sweep refuses ``--out`` records of another
clock, so one leaderboard never mixes clocks.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = ["CLOCK_UNITS", "resolve_clock", "clock_setup"]

CLOCK_UNITS = {"cpu": "CPU ms", "wall": "wall ms"}  # the leaderboard's and the picture's time unit per clock


def resolve_clock(clock: str | None, device: str) -> str:
    """``--clock`` on the resolved ``device``: None -> cpu on a CPU, wall on CUDA; cpu on CUDA is refused."""
    cuda = device.startswith("cuda")
    if clock is None:
        return "wall" if cuda else "cpu"
    if clock == "cpu" and cuda:
        raise ValueError(f"--clock cpu does not time the GPU's work on --device {device}: use --clock wall (the "
                         f"default on CUDA)")
    return clock


@contextlib.contextmanager
def clock_setup(clock: str, device: str) -> Iterator[str]:
    """Inside the block every stage timer uses ``clock`` (cpu: torch on one thread, restored after); yields how the
    times are measured, for the leaderboard's note."""
    import torch

    from litelvlm.bench import measurement_setup
    from litelvlm.timing import use_clock

    if clock == "cpu":
        with measurement_setup("cpu") as setup:
            yield f"{setup['clock']}, torch on {setup['threads']} thread"
    elif device.startswith("cuda"):
        with measurement_setup(device) as setup:
            yield setup["clock"]
    else:
        with use_clock("wall"):
            yield f"wall time, torch on {torch.get_num_threads()} threads"
