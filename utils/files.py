"""Atomic file writes: a reader, or a run killed in the middle of a write, sees either the
old file or the new one, never half a file. Every file the project rewrites in place
(checkpoints, metrics.json, config.yaml, label caches) is written through `atomic_write`.
"""
import json
import os


def atomic_write(path, write):
    """Call `write(handle)` on a new binary file next to `path`, then rename it over `path`.

    The temporary file is in the same folder (a rename is atomic only within one file
    system) under a unique hidden name, so concurrent writers of the same path (data-loader
    workers, ranks) do not collide; its data reach the disk (flush, fsync) before the rename.
    On any error, an interrupt included, the temporary file is removed, `path` is left as it
    was and the error is raised again. The folder is created when missing.
    """
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "xb") as handle:  # plain open: the file gets the umask's permissions
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    """Write `text` (UTF-8) to `path` atomically, exactly as given (no newline added)."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write_json(path, payload, **json_kwargs):
    """Write `json.dumps(payload, **json_kwargs)` to `path` atomically (no trailing newline).

    Serialising first means an unserialisable payload raises before anything is written.
    """
    atomic_write_text(path, json.dumps(payload, **json_kwargs))
