"""One-off conversion of MTPSL's partial-label files into the JSON splits of this folder
(README.md here says where they come from).

Not used at run time: PASCAL's `.npy` files are pickled dicts (task -> [image names]) and
need `allow_pickle`, so they are unpickled here, once, on files whose SHA-256 is checked
first; runs read the converted `.json.gz` files, which hold no code. The NYUD and
Cityscapes `.pth` files (`{'labels_weights': (N, T)}`) load with `weights_only=True`.

    python -m data.splits.convert_mtpsl ../shared/reference/partial_labels/mtpsl data/splits
"""
import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from data.partial_labels import OFFICIAL_TASKS, load_partial_labels, save_json

# output file -> (MTPSL file, dataset, setting, the source file's SHA-256)
SPLITS = {
    "pascal_onelabel.json.gz": ("pascal_onelabel.npy", "PASCALContext", "onelabel",
                                "527915d7728b4e9c39ec3651a54c68c1a37851108024e5f715150b049d62681e"),
    "pascal_randomlabels.json.gz": ("pascal_randomlabels.npy", "PASCALContext", "randomlabels",
                                    "65247182ffdcc79e6c6be54ad2332cd4a2fa3b1d013305a02dd204b0e3f68a79"),
    "nyud_mtan_onelabel.json.gz": ("nyuv2_onelabel.pth", "NYUD_MTAN", "onelabel",
                                   "757b3a95e1bc5145c1e72a783a489539f4c52004de338cb9798d8e227df6f389"),
    "nyud_mtan_randomlabels.json.gz": ("nyuv2_randomlabels.pth", "NYUD_MTAN", "randomlabels",
                                       "54e7bcbb739bb071d097fd77e4654ab830daeea41730fadaf0a4741ac7436a12"),
    "cityscapes_onelabel.json.gz": ("cityscapes_onelabel.pth", "Cityscapes", "onelabel",
                                    "3ded35572b875fc36865354418b7f3c1ef23628d00987f8b5d260de8f0aa90d0"),
}


def _pascal_labels(path, tasks):
    """id -> [0/1 per task] from a pickled {task: [image names]} dict."""
    by_task = np.load(path, allow_pickle=True).item()
    if sorted(by_task) != sorted(tasks):
        raise ValueError(f"{path}: tasks {sorted(by_task)}, expected {sorted(tasks)}")
    names = {task: [str(name) for name in by_task[task]] for task in tasks}
    for task, listed in names.items():
        if len(set(listed)) != len(listed):
            raise ValueError(f"{path}: task {task} lists an image twice")
    labelled = {task: set(listed) for task, listed in names.items()}
    ids = sorted(set().union(*labelled.values()))
    return {image_id: [int(image_id in labelled[task]) for task in tasks] for image_id in ids}


def convert(source_dir, out_dir):
    """Write every file of SPLITS from MTPSL's files in `source_dir`; returns the written paths."""
    written = []
    for name, (source, dataset, setting, sha256) in SPLITS.items():
        path = Path(source_dir) / source
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sha256:
            raise ValueError(f"{path}: SHA-256 {digest}, expected {sha256} (not the file this was written for)")
        tasks = list(OFFICIAL_TASKS[dataset])
        if source.endswith(".npy"):
            labels = _pascal_labels(path, tasks)
        else:
            record = load_partial_labels(path)
            if record["dataset"] != dataset or record["tasks"] != tasks:
                raise ValueError(f"{path}: a {record['dataset']} split, expected {dataset}")
            labels = record["labels"]
        record = {"dataset": dataset, "setting": setting, "seed": None,
                  "source": {"origin": f"the paper's split: MTPSL's {source}", "file": source, "sha256": sha256},
                  "tasks": tasks, "labels": labels}
        save_json(record, Path(out_dir) / name)
        written.append(Path(out_dir) / name)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source_dir", help="folder with MTPSL's files (pascal_*.npy, nyuv2_*.pth, cityscapes_*.pth)")
    parser.add_argument("out_dir", nargs="?", default=str(Path(__file__).resolve().parent),
                        help="where the .json.gz files go (default: this folder)")
    args = parser.parse_args(argv)
    for path in convert(args.source_dir, args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
