"""One exception type per kind of user-facing problem (STYLE section 10)."""


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
