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


RUN_STARTS = "run_starts"  # a record with this attribute set is the run's header: the console shows from here


def run_header(logger, message):
    """Log the run's first own line (every check has passed): the held setup lines follow it out."""
    logger.info(message, extra={RUN_STARTS: True})


class HeldConsole(logging.Handler):
    """A run's console while it sets up: its lines are held back until the run's header (a
    record logged with `run_header`), then shown in order, and everything after goes
    straight through. A setup error is thus the one `error:` line on the console; log.txt
    keeps every line. `discard()` drops what is still held (the run failed before its
    header); `close()` shows it."""

    def __init__(self, console):
        super().__init__()
        self.console = console
        self.held = []

    def emit(self, record):
        if self.held is not None and getattr(record, RUN_STARTS, False):
            for earlier in self.held:
                self.console.handle(earlier)
            self.held = None
        if self.held is None:
            self.console.handle(record)
        else:
            self.held.append(record)

    def discard(self):
        if self.held:
            self.held.clear()

    def close(self):
        for record in self.held or []:  # a run that finished without a header still shows its lines
            self.console.handle(record)
        self.held = None
        self.console.close()
        super().close()


def hold_console(logger):
    """Replace `logger`'s console handler with a HeldConsole (see there); returns it (None on
    ranks without a console)."""
    for handler in list(logger.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            held = HeldConsole(handler)
            held.addFilter(_NotFileOnly())
            logger.removeHandler(handler)
            logger.addHandler(held)
            return held
    return None


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
