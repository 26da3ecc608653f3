"""DataLoaders of training and evaluation, and the endless, resumable stream of training
batches that the training loop and benchmarks.train_loop both draw from."""
import signal

import cv2
import torch
from torch.utils.data import DataLoader

from data.samplers import ResumableDistributedSampler, ShardSampler
from utils.threads import available_cores


def loader_workers(requested):
    """(workers, note): `nworkers` capped at the cores this process may use (more workers than
    cores only contend; PyTorch would warn about it in every loader); note says why, or None."""
    cores = available_cores()
    if requested <= cores:
        return requested, None
    return cores, f"nworkers {requested} reduced to {cores}: this process may use {cores} CPU core(s)"


def worker_init(_):
    cv2.setNumThreads(0)  # OpenCV's own thread pool in every loader worker oversubscribes the CPU
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle (it saves first)


def shutdown_workers(loader):
    """End the persistent worker processes of `loader` now. DataLoader keeps the iterator
    that owns them (`_iterator`) until the loader itself is collected; its shutdown is what
    the iterator's own destructor calls."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None


def make_train_loader(cfg, dataset, sampler, device):
    """The training DataLoader: persistent workers (no restart cost per epoch), pinned
    memory on GPU so batches copy asynchronously, and its own generator: starting an epoch
    (or a resumed one) must not draw from the global RNG that the diffusion noise uses."""
    workers = loader_workers(cfg.nworkers)[0]
    return DataLoader(dataset, batch_size=cfg.trBatch, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", drop_last=True, worker_init_fn=worker_init,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                      generator=torch.Generator())


def make_val_loader(cfg, dataset, device):
    """Evaluation in dataset order, each rank its own shard (no padding duplicates)."""
    return DataLoader(dataset, batch_size=cfg.valBatch, sampler=ShardSampler(len(dataset)),
                      num_workers=loader_workers(cfg.nworkers)[0], pin_memory=device.type == "cuda",
                      drop_last=False, worker_init_fn=worker_init, generator=torch.Generator())


class TrainBatches:
    """Endless training batches from iteration `start` on: batch k of the stream is the one
    the uninterrupted run sees at iteration k + 1, whatever iteration a run resumes at.

    Each epoch repositions the sampler (its order depends on seed and epoch only) and tells
    the dataset the epoch (its augmentation is seeded by seed, epoch and sample index).
    """

    def __init__(self, cfg, dataset, device, start=0):
        self.dataset = dataset
        self.sampler = ResumableDistributedSampler(len(dataset), cfg.trBatch, cfg.seed)
        self.loader = make_train_loader(cfg, dataset, self.sampler, device)
        self.batches_per_epoch = self.sampler.batches_per_epoch
        self.seek(start)

    def seek(self, start):
        """Continue with the batch of iteration `start` + 1."""
        self._stream = self._batches(start)

    def _batches(self, start):
        epoch, batch_in_epoch = divmod(start, self.batches_per_epoch)
        while True:
            self.sampler.set_position(epoch, batch_in_epoch)
            self.dataset.set_epoch(epoch)
            yield from self.loader
            epoch, batch_in_epoch = epoch + 1, 0

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._stream)

    def close(self):
        """Stop the loader's persistent worker processes now (rather than whenever the
        garbage collector gets to them): a process that trains several runs, such as
        benchmarks.ablation, would otherwise keep every run's workers alive."""
        self._stream.close()
        shutdown_workers(self.loader)
