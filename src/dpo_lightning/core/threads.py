"""Whether torch's CPU threads outnumber the cores free to this process: oversubscribed threads wait on each other
at every parallel region, and a step or a generation slows several times with no error (on 2 cores shared with
another job, a 32-token generate took 16.7 s with torch's 2 threads and 3.7 s with OMP_NUM_THREADS=1).

The cores this process may use are its CPU affinity (`os.sched_getaffinity`), capped by a cgroup CPU quota
(`/sys/fs/cgroup/cpu.max`, a container's `--cpus`). How many of them other processes keep busy is the smaller of
the 1-minute load average's share of them and their busy time over a short sample of `/proc/stat`: a job that just
ended still weighs in the load average, a momentary burst in the sample, and neither alone is a reason to warn.
Call it once at the start of a process, before it runs threads of its own.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

SAMPLE_SECONDS = 0.25  # how long /proc/stat is watched for the cores' current use


def usable_cores() -> int:
    """The cores this process may run on: its affinity, capped by a cgroup v2 CPU quota when one is set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def _cpu_times(cpus: set[int]) -> tuple[float, float] | None:
    """(busy, total) jiffies of the given CPUs from /proc/stat; None where it cannot be read (not Linux)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = total = 0.0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [float(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(values)
        busy += sum(values) - values[3] - values[4]
    return (busy, total) if total else None


def busy_cores(cores: int, sample_seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many of this process's cores other processes keep busy now (None where the machine does not say)."""
    try:
        load = os.getloadavg()[0] * cores / (os.cpu_count() or cores)  # the share of the load on our cores
    except (OSError, AttributeError):
        return None
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    before = _cpu_times(cpus)
    if before is None:
        return load
    time.sleep(sample_seconds)
    after = _cpu_times(cpus)
    if after is None or after[1] <= before[1]:
        return load
    now = (after[0] - before[0]) / (after[1] - before[1]) * cores  # the busy share of our CPUs, in cores
    return min(load, now)


def thread_warning(threads: int | None = None, cores: int | None = None, busy: float | None = None) -> str | None:
    """The warning to print when torch's intra-op threads (`threads`, default torch.get_num_threads()) exceed the
    cores free to this process, with the OMP_NUM_THREADS to set; None when they do not. `cores` and `busy` default
    to what this machine says (`usable_cores`, `busy_cores`)."""
    threads = torch.get_num_threads() if threads is None else threads
    cores = usable_cores() if cores is None else cores
    busy = busy_cores(cores) if busy is None else busy
    taken = min(cores - 1, int(busy + 0.5)) if busy is not None else 0  # a core half used is taken; one stays ours
    free = cores - taken
    if threads <= free:
        return None
    if taken:
        why = f"other processes keep {busy:.1f} of its {cores} cores busy"
    else:
        why = f"this process may use {cores} cores"
    return (
        f"torch runs {threads} CPU threads but {why}: oversubscribed threads wait on each other and every step and "
        f"generation slows several times. Set OMP_NUM_THREADS={free} (and MKL_NUM_THREADS={free}) before starting, "
        f"or give the job cores of its own"
    )
