"""data.loaders: worker count capped at the usable cores; the endless stream resumes anywhere."""
import torch

from data import loaders
from data.datasets import build_dataset


def test_workers_above_the_usable_cores_are_reduced_with_a_note(monkeypatch):
    monkeypatch.setattr(loaders, "available_cores", lambda: 2)
    assert loaders.loader_workers(2) == (2, None)
    workers, note = loaders.loader_workers(4)
    assert workers == 2 and note == "nworkers 4 reduced to 2: this process may use 2 CPU core(s)"


def test_the_stream_resumed_at_any_iteration_gives_the_uninterrupted_batches(pascal_db, tiny_cfg):
    cfg = tiny_cfg(f"db_root={pascal_db.db_root}")  # 12 images, batches of 2: 6 per epoch
    dataset = build_dataset(cfg, "train")
    stream = loaders.TrainBatches(cfg, dataset, torch.device("cpu"))
    uninterrupted = [next(stream) for _ in range(9)]  # into the second epoch
    for start in (4, 6, 7):
        resumed = loaders.TrainBatches(cfg, dataset, torch.device("cpu"), start=start)
        for expected in uninterrupted[start:]:
            batch = next(resumed)
            assert batch["meta"]["id"] == expected["meta"]["id"]
            assert torch.equal(batch["image"], expected["image"]) and torch.equal(batch["semseg"], expected["semseg"])
