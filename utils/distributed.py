"""Process groups and collectives; the rest of the code runs unchanged in one process.

Processes are started by `torchrun` (RANK / WORLD_SIZE / LOCAL_RANK in the environment),
by `python -m utils.launch` (torchrun with one-line errors, what run.sh uses) or as a
plain `python main.py` (one process, no process group).
"""
import datetime
import os

import torch
import torch.distributed as dist


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
