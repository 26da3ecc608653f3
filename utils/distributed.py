"""Everything distributed lives here; the rest of the code runs unchanged in one process.

Processes are started by `torchrun` (RANK / WORLD_SIZE / LOCAL_RANK in the environment)
or as a plain `python main.py` (one process, no process group).
"""
import datetime
import os

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
