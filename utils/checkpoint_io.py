"""Checkpoint files: the one way to write them (atomic) and to read them (`weights_only=True`).

Below `engine/` so that tools such as `models.convert_official` write checkpoints the way a
training run does; the training run's own `Checkpointer` is in `engine/checkpoint.py`.
"""
import os
import pickle
import warnings
import zipfile

import torch

from utils.errors import CheckpointError
from utils.files import atomic_write


def save_checkpoint(path, state):
    """Write `state` to `path` atomically (`utils.files.atomic_write`): a run killed while
    writing leaves the previous file intact."""
    atomic_write(path, lambda handle: torch.save(state, handle))


def _reason(err):
    """The real reason of a failed `torch.load`, without torch's advice to retry unsafely or
    its notes about miniz."""
    skip = ("weights only load failed", "re-running", "please file an issue", "check the documentation")
    for line in str(err).splitlines():
        line = line.replace("WeightsUnpickler error:", "").split(". This is an internal miniz error")[0].strip()
        if line and not line.lower().startswith(skip):
            return line
    return type(err).__name__


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint dict safely; raise CheckpointError for a missing/corrupt/foreign file.

    Only tensors and plain containers are read (`weights_only=True`): a file that needs
    anything else (code to run) is refused with the unpickler's reason, never retried
    unsafely; a file that cannot be read at all is called truncated or damaged.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        reason = _reason(err)
        if "global" in reason.lower():  # a pickle that names functions or classes: it could run code
            raise CheckpointError(f"{path} is not a loadable checkpoint ({reason}); checkpoints are read "
                                  "as tensors and plain containers only, never as code") from None
        raise CheckpointError(f"{path} cannot be read: the file is truncated or damaged ({os.path.getsize(path):,} "
                              f"bytes; {reason}); delete it (a run folder's last.pth: the run then starts again "
                              "from iteration 0) or restore a copy") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path} is not a DiffusionMTL checkpoint (no 'model' state dict); "
                              "convert the public release's file with `python -m models.convert_official`")
    return state


def load_model_state(model, state_dict, source="checkpoint"):
    """Strictly load `state_dict` into `model`; name every mismatching key in the error."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mis_shaped = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
                  for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or unexpected or mis_shaped:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
            if keys:
                shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
                parts.append(f"{len(keys)} {label}: {shown}")
        raise CheckpointError(f"{source} does not match the model built from the config: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)
