"""Progress bars that leave no thread behind.

Every tqdm bar, even one created with `disable=True`, starts tqdm's monitor thread, which
then runs for the rest of the process (tqdm never stops it). The project's bars are a
tqdm without the monitor (it only tunes the refresh of bars updated too rarely), and a
bar that is not shown is a silent stand-in: a run called as a function (the ablation, the
tests) leaves the process as it found it.
"""
from tqdm import tqdm


class Bar(tqdm):
    """tqdm without its monitor thread."""

    monitor_interval = 0


class SilentBar:
    """The part of tqdm's interface the project uses, doing nothing."""

    def __init__(self, iterable=None):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def set_postfix_str(self, *args, **kwargs):
        pass

    def close(self):
        pass


def progress_bar(iterable=None, shown=True, **kwargs):
    """Bar(iterable, **kwargs) when `shown`, else a SilentBar over `iterable`."""
    return Bar(iterable, **kwargs) if shown else SilentBar(iterable)
