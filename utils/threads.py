"""CPU threads per process: sized to the cores this process may use, shared with the
other local processes and the data-loader workers (main.py and the benchmarks alike)."""
import contextlib
import os

import cv2
import torch

THREADS_ENV = "DIFFUSIONMTL_NUM_THREADS"
LAUNCHER_SET_OMP = "DIFFUSIONMTL_LAUNCHER_SET_OMP"  # OMP_NUM_THREADS came from the launcher, not the user


def available_cores():
    """CPU cores this process may run on (its affinity mask: taskset, cgroups cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def choose_num_threads(configured=None, loader_workers=0):
    """Intra-op threads for this process and where the number came from.

    Order: the config key `num_threads`, $DIFFUSIONMTL_NUM_THREADS, $OMP_NUM_THREADS, then
    the available cores shared among the processes of this node, less up to half of them
    for the data-loader workers, at least 1. More threads than free cores make OpenMP
    threads spin against each other: a busy 2-core machine trained 10x slower.
    """
    if configured:
        return int(configured), "config num_threads"
    for var in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if var == "OMP_NUM_THREADS" and os.environ.get(LAUNCHER_SET_OMP) == "1":
            continue
        if value.isdigit() and int(value) > 0:
            return int(value), f"${var}"
    per_process = max(1, available_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, per_process - min(loader_workers, per_process // 2)), \
        f"{available_cores()} cores / {os.environ.get('LOCAL_WORLD_SIZE', '1')} process(es), " \
        f"{loader_workers} loader worker(s)"


def set_num_threads(configured=None, loader_workers=0):
    """Apply `choose_num_threads`; returns (threads, reason) for the log."""
    threads, reason = choose_num_threads(configured, loader_workers)
    torch.set_num_threads(threads)
    return threads, reason


@contextlib.contextmanager
def restored_threads():
    """Give torch's and OpenCV's thread counts back on exit.

    An entry point (main.py, the benchmarks) sizes the threads of its process; called as a
    function (benchmarks.ablation, the tests) it must leave the caller's counts as it found them.
    """
    saved = torch.get_num_threads(), cv2.getNumThreads()
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        cv2.setNumThreads(saved[1])
