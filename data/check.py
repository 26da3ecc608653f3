"""Read every sample of a config's dataset once and list every problem (docs/datasets.md).

    python -m data.check --config_exp configs/pascal/resnet18_onelabel.yml --opts db_root=/data

Both splits are read through the dataset classes a run uses, every task of every sample
(labelled in the partial-label split or not; PASCAL's .mat files are decoded afresh, not
taken from the label cache), by the config's loader workers. Problems are collected, not
raised: missing and unreadable files, maps whose size differs from their image, label
values out of range, NaN or negative depth, and partial-label split ids that are not in
the training split. The report lists them all, then the counts per split and task, then
one summary line. Exit status 0 when the dataset is clean, 2 otherwise (or on a config
error). Sizes against `train_size` / `val_size` are a config matter: a run checks them
before training starts.
"""
import argparse
import os
import re
import sys
from collections import Counter

import numpy as np
from torch.utils.data import DataLoader, Dataset

from data.datasets import DATASETS, LOADER_KWARGS
from data.loaders import loader_workers, worker_init
from data.partial_labels import build_task_masks, split_source
from utils.cli import HelpFormatter
from utils.config import load_config
from utils.errors import DataError, DiffusionMTLError, one_line
from utils.progress import progress_bar

# Kind of a problem, from the message of the reader that found it (data/readers.py and the
# dataset classes); the first pattern that matches names it, else "invalid".
KINDS = (
    ("missing", r"^missing file|not found"),
    ("unreadable", r"cannot read|not a readable|has no variable|unexpected 'anno'"),
    ("wrong size", r"is \d+x\d+, the image is|must be \(H, W|got shape"),
    ("NaN", r"NaN|non-finite"),
    ("out of range", r"outside|must be in \[0, 1\]|must be finite and >= 0|negative|must hold floats"),
    ("split ids", r"image ids are not in|does not cover"),
)

ORDER = [kind for kind, _ in KINDS] + ["invalid"]  # how the report lists them


def _by_kind(counts):
    """'missing 2, unreadable 1, ...' in ORDER."""
    return ", ".join(f"{kind} {counts[kind]}" for kind in ORDER if counts[kind])


def kind_of(message):
    """The kind of problem a DataError message describes (KINDS)."""
    return next((kind for kind, pattern in KINDS if re.search(pattern, message)), "invalid")


def _existing(alternatives):
    """The first of a file's alternatives (e.g. .png or .jpg) that exists, else None."""
    return next((path for path in alternatives if os.path.isfile(path)), None)


class SampleProblems(Dataset):
    """Item i: the problems of sample i of a raw loader, as (tasks, kind, message) tuples.

    A sample that loads whole costs one read. One that does not is read again task by task
    (the image alone, then each task with it), so that every broken file of the sample is
    named, not only the first; the tasks of an image that cannot be read are checked for
    missing files only.
    """

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __getitem__(self, index):
        problems, failed = self._missing_files(index)
        try:
            sample = self.loader.load(index)
            decoded = {task: sample[task] for task in self.loader.tasks}
        except DataError as err:
            decoded = self._decode_each(index, failed, problems)
            if not problems:  # fails whole but not in parts: report it as it is
                problems.append((tuple(self.loader.tasks), kind_of(str(err)), one_line(err)))
        for task, target in decoded.items():
            problems += self._value_problems(index, task, target)
        merged = {}  # one line per message: a file two tasks read (PASCAL's LabelMap) is one problem
        for tasks, kind, message in problems:
            entry = merged.setdefault(message, ([], kind))
            entry[0].extend(task for task in tasks if task not in entry[0])
        return [(tuple(tasks), kind, message) for message, (tasks, kind) in merged.items()]

    def _missing_files(self, index):
        """(problems, the tasks and "image" that miss a file): stat calls only."""
        image_files = self.loader.files(index, [])
        missing = {}  # file -> the tasks (or "image") that need it
        for task in ["image", *self.loader.tasks]:
            needed = image_files if task == "image" else self.loader.files(index, [task])[len(image_files):]
            for alternatives in needed:
                if _existing(alternatives) is None:
                    missing.setdefault(" or ".join(alternatives), []).append(task)
        sample_id = self.loader.ids[index]
        problems = [(tuple(tasks), "missing", f"missing file {path} (sample {sample_id!r})")
                    for path, tasks in missing.items()]
        return problems, {task for tasks in missing.values() for task in tasks}

    def _decode_each(self, index, failed, problems):
        """The image, then each task apart (those in `failed` skipped); appends to `problems`."""
        if "image" in failed:
            return {}
        try:
            self.loader.load(index, [])
        except DataError as err:
            problems.append((("image",), kind_of(str(err)), one_line(err)))
            return {}
        decoded = {}
        for task in self.loader.tasks:
            if task in failed:
                continue
            try:
                decoded[task] = self.loader.load(index, [task])[task]
            except DataError as err:
                problems.append(((task,), kind_of(str(err)), one_line(err)))
        return decoded

    def _value_problems(self, index, task, target):
        """Values the readers accept but training cannot use: NaN / inf, negative depth."""
        if task not in ("depth", "normals"):
            return []
        path = _existing(self.loader.files(index, [task])[-1])
        where = f"{path} (sample {self.loader.ids[index]!r})"
        bad = int(np.count_nonzero(~np.isfinite(target)))
        if bad:
            return [((task,), "NaN", f"{where}: {task} has {bad} NaN / inf values")]
        if task == "depth" and (target < 0).any():
            return [((task,), "out of range", f"{where}: depth has {int((target < 0).sum())} negative values")]
        return []


def _collate(batch):
    """(samples in the batch, their problems in one list)."""
    return len(batch), [problem for problems in batch for problem in problems]


def check_split(cfg, split, workers, show_progress):
    """(samples read, problems as (split, tasks, kind, message)) of one split."""
    name = cfg.train_db_name if split == "train" else cfg.val_db_name
    root = cfg.train_db_dir if split == "train" else cfg.val_db_dir
    kwargs = LOADER_KWARGS.get(name, lambda _: {})(cfg)
    if "cache_dir" in kwargs:
        kwargs["cache_dir"] = None  # read the .mat files themselves, not decoded copies
    try:
        loader = DATASETS[name](root, split, cfg.TASKS.NAMES, **kwargs)
    except DataError as err:
        return 0, [(split, ("dataset",), kind_of(str(err)), one_line(err))]
    problems = []
    if split == "train":
        try:
            build_task_masks(cfg, loader.ids)
        except DataError as err:
            problems.append((split, ("split",), kind_of(str(err)), one_line(err)))
    samples = DataLoader(SampleProblems(loader), batch_size=4, num_workers=workers, collate_fn=_collate,
                         worker_init_fn=worker_init)
    bar = progress_bar(shown=show_progress, total=len(loader), desc=split, unit="img", file=sys.stderr,
                       leave=False)
    read = 0
    iterator = iter(samples)
    try:
        for count, found in iterator:
            read += count
            problems += [(split, *problem) for problem in found]
            bar.update(count)
    finally:
        del iterator  # stops the workers even when interrupted
        bar.close()
    return read, problems


def report(cfg, counts, problems, out):
    """The problem list, the counts per split and task, and the one-line summary."""
    if problems:
        print(f"{len(problems)} problem(s):", file=out)
        for split, tasks, kind, message in problems:
            print(f"  {split:5s} {', '.join(tasks):18s} {kind:13s} {message}", file=out)
        print("per split and task:", file=out)
        for split in ("train", "val"):
            per_task = {}
            for where, tasks, kind, _ in problems:
                if where == split:
                    for task in tasks:
                        per_task.setdefault(task, Counter())[kind] += 1
            if per_task:
                print(f"  {split:5s} " + "; ".join(f"{task} {sum(kinds.values())} ({_by_kind(kinds)})"
                                                   for task, kinds in per_task.items()), file=out)
    kinds = Counter(kind for _, _, kind, _ in problems)
    read = f"{counts['train']} train + {counts['val']} val samples of {cfg.train_db_name} ({cfg.train_db_dir})"
    if problems:
        summary = f"data.check: {len(problems)} problem(s) in {read}: {_by_kind(kinds)}"
    else:
        summary = f"data.check: clean: {read} read, every file readable and in range"
    print(summary, file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data.check", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config_exp", required=True, help="YAML experiment config: its dataset, db_root, tasks "
                                                            "and partial-label split are checked")
    parser.add_argument("--opts", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. db_root=/data nworkers=8")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config_exp, args.opts)
    except DiffusionMTLError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    workers = loader_workers(cfg.nworkers)[0]
    print(f"data.check: {cfg.train_db_name} at {cfg.train_db_dir}, tasks {', '.join(cfg.TASKS.NAMES)}; "
          f"partial labels: {split_source(cfg)}; {workers} loader worker(s)")
    counts, problems = {}, []
    for split in ("train", "val"):
        counts[split], found = check_split(cfg, split, workers, show_progress=sys.stderr.isatty())
        problems += found
    report(cfg, counts, problems, sys.stdout)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
