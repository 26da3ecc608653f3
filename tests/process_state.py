"""The process-wide state a test may not leave changed for the tests after it.

`tests/conftest.py` takes a `snapshot()` before every test and compares it after: a test
that changed the CPU thread counts, the environment, a signal handler, the working
directory, torch's default dtype, deterministic / matmul-precision / grad-mode flags,
the project logger's handlers, or left threads or child processes running fails (at
teardown), naming what changed; the state is then put back so that one leak does not
fail every later test. The global random generators are different: drawing a number
changes them legitimately, so they are seeded before each test and restored after it
(`seeded_rng`), which makes every test's draws independent of the order tests run in.
"""
import contextlib
import logging
import multiprocessing
import os
import random
import signal
import threading

import cv2
import numpy as np
import torch

# How long a thread or child process a test started may take to end after the test returns
# (joined, so this is a bound, not a wait): generous for a machine running at load 8.
SETTLE_SECONDS = 60.0
PROJECT_LOGGER = "diffusionmtl"
PYTEST_OWN = ("PYTEST_CURRENT_TEST",)  # pytest updates it at every phase


def _signal_handlers():
    handlers = {}
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            handlers[signal.Signals(signum).name] = signal.getsignal(signum)
        except (ValueError, OSError):  # real-time signals without a name, or not queryable
            continue
    return handlers


def _own(handler):
    """A handler pytest attaches for the duration of a test phase (log capture), not a test's."""
    return type(handler).__module__.startswith("_pytest")


def _handlers(name):
    logger = logging.getLogger(name)
    return [(type(h).__name__, getattr(h, "baseFilename", None)) for h in logger.handlers if not _own(h)]


def _torch_sigchld(handler):
    """PyTorch's DataLoader installs a SIGCHLD handler the first time a loader with workers
    starts, once per process (it chains to the previous handler), and never removes it."""
    return getattr(handler, "__qualname__", "").startswith("_set_SIGCHLD_handler")


def snapshot():
    """{what: value} of everything a test must leave as it found it."""
    return {
        "torch threads": torch.get_num_threads(),
        "OpenCV threads": cv2.getNumThreads(),
        "environment": {k: v for k, v in os.environ.items() if k not in PYTEST_OWN},
        "signal handlers": _signal_handlers(),
        "working directory": os.getcwd(),
        "default dtype": torch.get_default_dtype(),
        "deterministic algorithms": (torch.are_deterministic_algorithms_enabled(),
                                     torch.is_deterministic_algorithms_warn_only_enabled()),
        "cudnn flags": (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic),
        "float32 matmul precision": torch.get_float32_matmul_precision(),
        "grad mode": torch.is_grad_enabled(),
        "root logger handlers": _handlers(None),
        f"'{PROJECT_LOGGER}' logger handlers": _handlers(PROJECT_LOGGER),
        "threads": {t.ident: t for t in threading.enumerate()},
        "child processes": {p.pid: p for p in multiprocessing.active_children()},
    }


def _settle(before, after):
    """Join the threads and child processes started by the test (returns as soon as they end)."""
    for key, join in (("threads", lambda t, s: t.join(s)), ("child processes", lambda p, s: p.join(s))):
        for ident, item in after[key].items():
            if ident not in before[key]:
                join(item, SETTLE_SECONDS)


def _describe_env(before, after):
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return ", ".join(f"{k}: {before.get(k, '<unset>')!r} -> {after.get(k, '<unset>')!r}" for k in changed)


def changes(before):
    """What differs from the snapshot `before` now. -> [one line per changed item]"""
    after = snapshot()
    _settle(before, after)
    after = snapshot()
    found = []
    for key, value in before.items():
        now = after[key]
        if key == "environment":
            if now != value:
                found.append(f"environment ({_describe_env(value, now)})")
        elif key == "signal handlers":
            changed = sorted(name for name in value if value[name] != now.get(name)
                             and not (name == "SIGCHLD" and _torch_sigchld(now.get(name))))
            if changed:
                found.append("signal handlers of " + ", ".join(f"{n} ({value[n]} -> {now.get(n)})" for n in changed))
        elif key in ("threads", "child processes"):
            left = [item for ident, item in now.items() if ident not in value]
            if left:
                found.append(f"{key} still running {SETTLE_SECONDS:.0f} s after the test: "
                             + ", ".join(str(getattr(i, "name", i)) for i in left))
        elif now != value:
            found.append(f"{key} {value!r} -> {now!r}")
    return found


def restore(before):
    """Put back what `changes` can name (threads and processes cannot be undone here).

    The deterministic flags are set again only when they differ: the setter has a side
    effect of its own (torch.use_deterministic_algorithms sets $TORCHINDUCTOR_CACHE_DIR).
    """
    enabled, warn_only = before["deterministic algorithms"]
    if (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) != \
            (enabled, warn_only):
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.set_num_threads(before["torch threads"])
    cv2.setNumThreads(before["OpenCV threads"])
    for key in [k for k in os.environ if k not in PYTEST_OWN and k not in before["environment"]]:
        del os.environ[key]
    os.environ.update(before["environment"])
    for name, handler in before["signal handlers"].items():
        if handler is not None and signal.getsignal(signal.Signals[name]) != handler:
            signal.signal(signal.Signals[name], handler)
    os.chdir(before["working directory"])
    torch.set_default_dtype(before["default dtype"])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before["cudnn flags"]
    torch.set_float32_matmul_precision(before["float32 matmul precision"])
    torch.set_grad_enabled(before["grad mode"])
    for name in (None, PROJECT_LOGGER):
        logger = logging.getLogger(name)
        kept = set(before["root logger handlers" if name is None else f"'{PROJECT_LOGGER}' logger handlers"])
        for handler in list(logger.handlers):
            if not _own(handler) and (type(handler).__name__, getattr(handler, "baseFilename", None)) not in kept:
                handler.close()
                logger.removeHandler(handler)


@contextlib.contextmanager
def seeded_rng(seed=0):
    """Seed Python's, NumPy's and torch's global generators for one test; restore them after."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
