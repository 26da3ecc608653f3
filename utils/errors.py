"""One exception type per kind of user-facing problem (STYLE.md, "What that means here",
item 10: errors for humans)."""


class DiffusionMTLError(Exception):
    """Base class: entry points print the message without a traceback."""


class ConfigError(DiffusionMTLError):
    """A configuration file or override is invalid."""


class DataError(DiffusionMTLError):
    """A dataset file is missing, corrupt or inconsistent."""


class CheckpointError(DiffusionMTLError):
    """A checkpoint is missing, corrupt, or does not match the model."""


class ImageReadError(DiffusionMTLError):
    """An input image cannot be read or decoded."""


class UsageError(DiffusionMTLError):
    """A command-line argument cannot be used as given (e.g. an output path that is a file)."""


def one_line(err):
    """The message of a user-facing error on one line; an error raised again by a DataLoader
    worker carries the worker's traceback, of which only the original message is kept."""
    text = str(err).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
