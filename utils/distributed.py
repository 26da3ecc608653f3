"""Process groups and collectives; the rest of the code runs unchanged in one process.

Processes are started by `torchrun` (RANK / WORLD_SIZE / LOCAL_RANK in the environment),
by `python -m utils.launch` (torchrun with one-line errors, what run.sh uses) or as a
plain `python main.py` (one process, no process group). `--device` is resolved here.
"""
import datetime
import os

import torch
import torch.distributed as dist

from utils.errors import UsageError


def resolve_device(preference="auto", local_rank=0, world_size=1):
    """The device of this process for `--device` auto / cpu / cuda / cuda:N; a UsageError
    (one line) when the GPU asked for is not there.

    auto: this process's GPU (cuda:LOCAL_RANK, shared round-robin when there are more
    processes than GPUs) when there is one, else the CPU. cuda: the same, but no GPU is an
    error. cuda:N: that GPU, for a single process (several processes take cuda:LOCAL_RANK
    each; CUDA_VISIBLE_DEVICES chooses which GPUs they see).
    """
    if preference == "cpu":
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if preference == "auto":
        return torch.device("cuda", local_rank % count) if count else torch.device("cpu")
    if count == 0:
        if torch.version.cuda is None:
            why = f"torch {torch.__version__} is a CPU-only build"
        elif "CUDA_VISIBLE_DEVICES" in os.environ:
            why = f"no GPU visible with CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}"
        else:
            why = "no GPU or no NVIDIA driver found"
        raise UsageError(f"--device {preference}: CUDA is not available ({why}); use --device cpu, or auto "
                         f"(the GPU when there is one)")
    visible = f"cuda:0..cuda:{count - 1}" if count > 1 else "cuda:0"
    if preference == "cuda":
        if local_rank >= count:
            raise UsageError(f"--device cuda: process {local_rank} of this node has no GPU of its own ({count} "
                             f"visible: {visible}); start at most {count} process(es) per node (NGPUS)")
        return torch.device("cuda", local_rank)
    index = int(preference.split(":")[1])
    if world_size > 1:
        raise UsageError(f"--device {preference} names one GPU for one process; a run of {world_size} processes "
                         f"gives each its own (--device cuda); CUDA_VISIBLE_DEVICES chooses which GPUs they see")
    if index >= count:
        raise UsageError(f"--device {preference}: there is no GPU {index}; {count} visible ({visible}"
                         + (f", CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}"
                            if "CUDA_VISIBLE_DEVICES" in os.environ else "") + ")")
    return torch.device("cuda", index)


def init_distributed(device_pref="auto"):
    """Initialise the process group from torchrun's environment; return the device
    (`resolve_device`). Backend: nccl when this process drives a GPU, gloo otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_pref, int(os.environ.get("LOCAL_RANK", "0")), world_size)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30), **kwargs)
    return device


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
