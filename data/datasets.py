"""Datasets by name: `build_dataset(cfg, split)` returns the samples of docs/conventions.md."""
import functools
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from data.cityscapes import Cityscapes
from data.metadata import LAYOUT_OF
from data.mtan_transforms import MTANTrainTransform, MTANValTransform
from data.nyud import NYUD, NYUDMTAN
from data.partial_labels import build_task_masks
from data.pascal_context import PascalContext
from data.transforms import TrainTransform, ValTransform
from utils.errors import DataError
from utils.tasks import DATASET_TASKS

DATASETS = {"PASCALContext": PascalContext, "NYUD": NYUD, "NYUD_MTAN": NYUDMTAN, "Cityscapes": Cityscapes}

# Loader arguments that come from the config, per dataset.
LOADER_KWARGS = {
    # Labels decoded from .mat files are kept as PNGs: .mat parsing and thinning happen once.
    "PASCALContext": lambda cfg: {"cache_dir": os.path.join(cfg.output_dir, "label_cache") if cfg.label_cache
                                  else None},
    "Cityscapes": lambda cfg: {"num_classes": cfg.semseg_classes or DATASET_TASKS["Cityscapes"]["semseg"]},
}

# Datasets whose protocol has its own transforms (default: TrainTransform / ValTransform): the
# MTAN layouts follow MTPSL's (data/mtan_transforms.py), which flips Cityscapes but not NYUD.
TRAIN_TRANSFORMS = {"NYUD_MTAN": functools.partial(MTANTrainTransform, flip_prob=0.0),
                    "Cityscapes": functools.partial(MTANTrainTransform, flip_prob=0.5)}
VAL_TRANSFORMS = {"NYUD_MTAN": MTANValTransform, "Cityscapes": MTANValTransform}



class PartiallyLabelled(Dataset):
    """A raw loader plus a (N, T) task mask: targets of unlabelled tasks are not decoded but
    all-255 maps before `transform`, so every later step (scaling, padding) keeps them ignored.

    With `augment_seed` set (training), the augmentation of sample i in epoch e draws
    from a generator seeded with (seed, e, i): it does not depend on the worker, the
    number of workers or processes, or where in the epoch a resumed run starts.
    """

    def __init__(self, loader, transform, task_masks, tasks, augment_seed=None):
        self.loader = loader
        self.transform = transform
        self.task_masks = task_masks  # (N, T) bool, columns in `tasks` order
        self.tasks = list(tasks)
        self.ids = loader.ids
        self.augment_seed = augment_seed
        # In shared memory, so that set_epoch in the main process reaches persistent workers.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self):
        return int(self._epoch)

    def set_epoch(self, epoch):
        self._epoch.fill_(epoch)

    def __len__(self):
        return len(self.loader)

    def missing_files(self):
        """Files that the samples need and that do not exist (stat calls only; in training,
        only the labelled tasks' files), so a gap stops a run before it starts."""
        if not hasattr(self.loader, "files"):
            return []
        missing = []
        for index, task_mask in enumerate(self.task_masks):
            tasks = [t for t, labelled in zip(self.tasks, task_mask) if labelled]
            missing += [paths[0] for paths in self.loader.files(index, tasks)
                        if not any(os.path.exists(p) for p in paths)]
        return missing

    def __getitem__(self, index):
        task_mask = self.task_masks[index]
        sample = self.loader.load(index, tasks=[t for t, labelled in zip(self.tasks, task_mask) if labelled])
        sample["task_mask"] = task_mask
        if self.augment_seed is None:
            return self.transform(sample)
        return self.transform(sample, rng=np.random.default_rng([self.augment_seed, self.epoch, index]))


def build_dataset(cfg, split):
    """The 'train' (augmented, partially labelled) or 'val' (padded, fully labelled) dataset."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    name = cfg.train_db_name if split == "train" else cfg.val_db_name
    root = cfg.train_db_dir if split == "train" else cfg.val_db_dir
    if not os.path.isdir(root):
        raise DataError(f"dataset folder not found: {root}; set db_root to the folder holding "
                        f"'{os.path.basename(root)}' (docs/datasets.md: where to download it and how to "
                        f"arrange it; `python -m data.check --config_exp CONFIG` then verifies every file), "
                        f"or create a small synthetic one with `python -m data.synthetic --layout "
                        f"{LAYOUT_OF[name]} --out {os.path.dirname(root) or '.'}`")
    tasks = cfg.TASKS.NAMES
    loader = DATASETS[name](root, split, tasks, **LOADER_KWARGS.get(name, lambda _: {})(cfg))
    if split == "train":
        transform = TRAIN_TRANSFORMS.get(name, TrainTransform)(tasks, cfg.train_size)
        task_masks = build_task_masks(cfg, loader.ids)
    else:
        transform = VAL_TRANSFORMS.get(name, ValTransform)(tasks, cfg.val_size)
        task_masks = np.ones((len(loader.ids), len(tasks)), dtype=bool)
    return PartiallyLabelled(loader, transform, task_masks, tasks,
                             augment_seed=cfg.seed if split == "train" else None)
