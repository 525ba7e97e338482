"""The oversubscription check (core/threads.py): torch's threads against the cores free to the process."""

from __future__ import annotations

import os

import torch

from dpo_lightning.core.threads import busy_cores, thread_warning, usable_cores


def test_threads_beyond_the_free_cores_warn_with_the_setting_to_use():
    # the machine: 2 cores, another job on one of them, torch's default of 2 threads
    warning = thread_warning(threads=2, cores=2, busy=1.3)
    assert "torch runs 2 CPU threads" in warning and "other processes keep 1.3 of its 2 cores busy" in warning
    assert "OMP_NUM_THREADS=1" in warning
    assert thread_warning(threads=1, cores=2, busy=1.3) is None  # what the warning says to set
    # more threads than the cores the process may use at all, on an idle machine
    assert "may use 4 cores" in thread_warning(threads=16, cores=4, busy=0.0)
    assert "OMP_NUM_THREADS=4" in thread_warning(threads=16, cores=4, busy=0.0)


def test_no_warning_when_the_threads_fit():
    assert thread_warning(threads=2, cores=2, busy=0.3) is None  # a core a third used by others stays free
    assert thread_warning(threads=4, cores=8, busy=3.0) is None
    assert "OMP_NUM_THREADS=1" in thread_warning(threads=2, cores=2, busy=5.0)  # one core always stays ours


def test_this_machine_is_read():
    cores = usable_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    busy = busy_cores(cores, sample_seconds=0.05)
    assert busy is None or 0.0 <= busy <= max(cores, os.getloadavg()[0])
    assert thread_warning(threads=1) is None  # one thread never oversubscribes
    assert f"OMP_NUM_THREADS={cores}" in thread_warning(threads=cores + 1, busy=0.0)
    warning = thread_warning()  # torch's own thread count, this machine's load: either fits or names the fix
    assert warning is None or f"torch runs {torch.get_num_threads()} CPU threads" in warning
