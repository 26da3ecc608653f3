"""Training and evaluation samplers: resumable mid-epoch, sharded over ranks."""
import torch
from torch.utils.data import Sampler

from utils.distributed import get_rank, get_world_size


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
