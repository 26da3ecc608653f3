"""Everything distributed lives here; the rest of the code runs unchanged in one process.

Processes are started by `torchrun` (RANK / WORLD_SIZE / LOCAL_RANK in the environment),
by `python -m utils.distributed` (torchrun with one-line errors, what run.sh uses) or as a
plain `python main.py` (one process, no process group).
"""
import datetime
import json
import logging
import os
import signal
import sys
import threading
import time

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def init_distributed(device_pref="auto"):
    """Initialise the process group from torchrun's environment; return the device.

    Backend: nccl when this process drives a GPU, gloo otherwise.
    """
    use_cuda = torch.cuda.is_available() and device_pref != "cpu"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        kwargs = {"device_id": device} if use_cuda else {}
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30), **kwargs)
    return device


# ---------------------------------------------------------------------------------------
# CPU threads
# ---------------------------------------------------------------------------------------
THREADS_ENV = "DIFFUSIONMTL_NUM_THREADS"
_LAUNCHER_SET_OMP = "DIFFUSIONMTL_LAUNCHER_SET_OMP"  # OMP_NUM_THREADS came from the launcher, not the user


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
        if var == "OMP_NUM_THREADS" and os.environ.get(_LAUNCHER_SET_OMP) == "1":
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


# ---------------------------------------------------------------------------------------
# Helper processes (evaluation pools) end with the process that started them
# ---------------------------------------------------------------------------------------
def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # zombie: dead
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def exit_with_parent(parent_pid, interval=1.0):
    """Pool initializer: ignore Ctrl-C (the parent handles it) and exit when `parent_pid` is gone.

    A forkserver's workers are not the trainer's children, so a `kill -9` of the trainer
    would leave them (and the forkserver they keep alive) running for minutes.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while _alive(parent_pid):
            time.sleep(interval)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


# ---------------------------------------------------------------------------------------
# Launcher: torchrun whose failures are the children's one-line errors
# ---------------------------------------------------------------------------------------
LAUNCHED_ENV = "DIFFUSIONMTL_LAUNCHER"  # set for the children: the launcher prints their errors


def report_error(message):
    """How an entry point reports a user-facing error: one line on stderr, or, under the
    launcher, into torchrun's per-process error file, which the launcher prints once."""
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        with open(error_file, "w", encoding="utf-8") as handle:
            json.dump({"message": message, "timestamp": int(time.time())}, handle)
    if os.environ.get(LAUNCHED_ENV) != "1" or not error_file:
        print(f"error: {message}", file=sys.stderr)


def launch(argv=None):
    """`torchrun ARGS` with failures reduced to the first failing process's one-line error and
    its exit status (2 for config / data errors), instead of torchrun's ChildFailedError report.

    Returns the exit status.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(argv)
    os.environ[LAUNCHED_ENV] = "1"
    if "OMP_NUM_THREADS" not in os.environ:  # torchrun would force 1; main.py chooses instead
        os.environ["OMP_NUM_THREADS"], os.environ[_LAUNCHER_SET_OMP] = "1", "1"
    logging.disable(logging.ERROR)  # torchrun's own warnings and failure reports
    try:
        run(args)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        message = failure.message if isinstance(failure.message, str) else failure.message.get("message", "")
        if failure.error_file_data.get("timestamp") is None or failure.exitcode < 0:
            # not one of our errors: a crash (its traceback is above) or a signal
            message = f"process of rank {rank} failed with exit status {failure.exitcode}" + (
                f" ({message})" if failure.exitcode < 0 else " (its traceback is above)")
        print(f"error: {message}", file=sys.stderr)
        return 128 - failure.exitcode if failure.exitcode < 0 else failure.exitcode
    except SignalException as err:  # Ctrl-C / kill: the processes saved and said so themselves
        return 128 + int(err.sigval)
    except Exception as err:  # rendezvous problems, e.g. a port in use on a multi-node run
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: torchrun could not start the processes: {type(err).__name__}: {first} "
              "(multi-node runs: set MASTER_ADDR and a free MASTER_PORT)", file=sys.stderr)
        return 2
    return 0


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def get_rank():
    return dist.get_rank() if is_distributed() else 0


def get_world_size():
    return dist.get_world_size() if is_distributed() else 1


def is_main_process():
    return get_rank() == 0


def barrier():
    if is_distributed():
        dist.barrier()


def cleanup():
    if is_distributed():
        dist.destroy_process_group()


def all_reduce_sum(tensors):
    """Sum each tensor in place across ranks (metric states, loss sums)."""
    if not is_distributed():
        return tensors
    device = _comm_device()  # CPU for gloo, the current GPU for nccl
    for tensor in tensors:
        target = tensor.to(device)  # the tensor itself when it already lives there
        dist.all_reduce(target, op=dist.ReduceOp.SUM)
        if target is not tensor:
            tensor.copy_(target)
    return tensors


def all_gather_objects(obj):
    """Every rank's `obj` as a list indexed by rank (small picklable states, e.g. RNG)."""
    if not is_distributed():
        return [obj]
    gathered = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_flag(flag):
    """True on every rank when `flag` is true on any rank (e.g. a non-finite loss)."""
    if not is_distributed():
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def _comm_device():
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class ResumableDistributedSampler(Sampler):
    """Shuffled, rank-sharded, drop-last sampler that can start mid-epoch.

    The order depends only on (seed, epoch), so a run resumed at iteration k sees
    exactly the batches the uninterrupted run saw after iteration k.
    """

    def __init__(self, dataset_len, batch_size, seed, rank=None, world_size=None):
        self.dataset_len = dataset_len
        self.batch_size = batch_size
        self.seed = seed
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size
        self.batches_per_epoch = dataset_len // (batch_size * self.world_size)
        if self.batches_per_epoch == 0:
            raise ValueError(f"the training set ({dataset_len} images) is smaller than one global "
                             f"batch ({batch_size} x {self.world_size} processes)")
        self.epoch = 0
        self.start_batch = 0

    def set_position(self, epoch, start_batch):
        self.epoch = epoch
        self.start_batch = start_batch

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.dataset_len, generator=generator)
        used = self.batches_per_epoch * self.batch_size * self.world_size
        mine = order[:used][self.rank::self.world_size]
        return iter(mine[self.start_batch * self.batch_size:].tolist())

    def __len__(self):
        return (self.batches_per_epoch - self.start_batch) * self.batch_size


class ShardSampler(Sampler):
    """Evaluation sharding without padding: rank r takes indices r, r+W, ... (no duplicates)."""

    def __init__(self, dataset_len, rank=None, world_size=None):
        rank = get_rank() if rank is None else rank
        world_size = get_world_size() if world_size is None else world_size
        self.indices = list(range(rank, dataset_len, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


if __name__ == "__main__":
    sys.exit(launch())
