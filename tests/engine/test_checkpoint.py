"""Checkpoints: atomic writes, safe loading, clear errors."""
import os

import pytest
import torch

from engine.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from utils.errors import CheckpointError


def test_round_trip_and_no_temporary_files(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "run" / "last.pth"
    save_checkpoint(str(path), {"model": model.state_dict(), "iteration": 5, "rng": [(1, 2)]})
    assert os.listdir(path.parent) == ["last.pth"]
    state = load_checkpoint(str(path))
    assert state["iteration"] == 5
    other = torch.nn.Linear(3, 2)
    load_model_state(other, state["model"])
    assert torch.equal(other.weight, model.weight)


def test_failed_write_keeps_previous_file(tmp_path):
    path = str(tmp_path / "last.pth")
    save_checkpoint(path, {"model": {"w": torch.ones(2)}})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}, "bad": Unpicklable()})
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert os.listdir(tmp_path) == ["last.pth"]


def test_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(str(tmp_path / "none.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        load_checkpoint(str(corrupt))
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a DiffusionMTL checkpoint"):
        load_checkpoint(str(foreign))


def test_pickled_objects_are_refused(tmp_path):
    import argparse

    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "x": argparse.Namespace(a=1)}, path)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_checkpoint(str(path))


def test_mismatch_names_keys():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    state = model.state_dict()
    state["0.weight"] = torch.zeros(5, 3)
    del state["1.bias"]
    state["extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_model_state(model, state, source="ckpt.pth")
    message = str(err.value)
    assert "ckpt.pth" in message and "1.bias" in message and "extra" in message and "0.weight (5, 3)" in message


class _RunsACommand:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_malicious_file_names_the_reason_and_gives_no_unsafe_advice(tmp_path):
    import pickle

    path = tmp_path / "malicious.pth"
    torch.save({"model": _RunsACommand()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(str(path))
    message = str(err.value)
    assert "malicious.pth is not a loadable checkpoint" in message
    assert "GLOBAL posix.system" in message or "GLOBAL os.system" in message
    assert "weights_only=False" not in message and "False" not in message
    assert "Re-running" not in message and "\n" not in message

    raw = tmp_path / "raw_pickle.pth"  # a plain pickle, not torch's zip format
    raw.write_bytes(pickle.dumps({"model": _RunsACommand()}, protocol=4))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(str(raw))
    assert "Unsupported operand" in str(err.value) and "Re-running" not in str(err.value)
