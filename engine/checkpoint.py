"""The one way to write and read checkpoints: atomic writes, `weights_only=True` reads."""
import os
import pickle
import tempfile
import warnings
import zipfile

import torch

from utils.errors import CheckpointError


def save_checkpoint(path, state):
    """Write `state` to `path` atomically: a temporary file in the same folder, then rename.

    A run killed while writing leaves the previous file intact.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(prefix=".tmp_", suffix=".pth", dir=folder)
    try:
        with os.fdopen(handle, "wb") as tmp:
            torch.save(state, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def _reason(err):
    """The real reason of a failed `torch.load`, without torch's advice to retry unsafely."""
    skip = ("weights only load failed", "re-running", "please file an issue", "check the documentation")
    for line in str(err).splitlines():
        line = line.replace("WeightsUnpickler error:", "").strip()
        if line and not line.lower().startswith(skip):
            return line
    return type(err).__name__


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint dict safely; raise CheckpointError for a missing/corrupt/foreign file.

    Only tensors and plain containers are read (`weights_only=True`); a file that needs
    anything else is refused with the unpickler's reason, never retried unsafely.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointError(f"{path} is not a loadable checkpoint ({_reason(err)}); only tensors and "
                              "plain containers are read from checkpoints") from None
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
