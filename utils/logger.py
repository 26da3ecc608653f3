"""Rank-0 logging to the console and `log.txt`; other ranks get a silent logger."""
import logging
import os
import sys

FILE_ONLY = "file_only"  # a record with this attribute set goes to log.txt alone


class _NotFileOnly(logging.Filter):
    def filter(self, record):
        return not getattr(record, FILE_ONLY, False)


def setup_logger(run_dir=None, rank=0, name="diffusionmtl"):
    """Return the project logger; only rank 0 writes (console + run_dir/log.txt)."""
    logger = logging.getLogger(name)
    for handler in logger.handlers:
        handler.close()
    logger.handlers.clear()
    logger.propagate = False
    if rank != 0:
        logger.addHandler(logging.NullHandler())
        logger.setLevel(logging.CRITICAL + 1)
        return logger
    logger.setLevel(logging.INFO)
    fmt = logging.Formatter("[%(asctime)s] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(fmt)
    console.addFilter(_NotFileOnly())
    logger.addHandler(console)
    if run_dir is not None:
        os.makedirs(run_dir, exist_ok=True)
        file_handler = logging.FileHandler(os.path.join(run_dir, "log.txt"), mode="a", encoding="utf-8")
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger


def log_to_file(logger, message):
    """Record `message` in log.txt only (it has been shown on stderr already): a log read
    later says why the run stopped."""
    logger.info(message, extra={FILE_ONLY: True})


def close_logger(logger):
    """Close and remove the logger's handlers (log.txt, the console stream): a run called as a
    function leaves no open file and no handler writing to a stream that may be closed later."""
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)
