"""Is the installed torch / torchvision pair usable? Every entry point asks before it imports
torch (run.sh through `python -m utils.install`, main.py and inference.py through
`checked_imports`): a pair not built for each other is otherwise found out deep inside
`import torchvision`, as a 25-line traceback ending in `operator torchvision::nms does not
exist`. The versions come from the packages' metadata, which is read without importing them.

    python -m utils.install      # exit 0 when usable; else one `error: ...` line, exit 2
"""
import contextlib
import importlib.metadata
import os
import re
import sys

from utils.errors import DiffusionMTLError
from utils.launch import report_error

MIN_TORCH = (2, 6)  # requirements.txt
TORCHVISION_MINOR_OFFSET = 15  # torch 2.N goes with torchvision 0.(N + 15): 2.14 <-> 0.29
WHEEL_INDEX = "https://download.pytorch.org/whl"


class InstallError(DiffusionMTLError):
    """The installed torch / torchvision cannot run this project."""


def installed_version(package):
    """The installed version of `package` from its metadata (no import), or None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def release(version):
    """'2.14.1+cpu' -> (2, 14, 1): the leading numbers of a version string."""
    numbers = []
    for piece in version.split("+")[0].split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        numbers.append(int(digits.group()))
    return tuple(numbers)


def matching_torchvision(torch_version):
    """The torchvision series ('0.29') built for `torch_version` ('2.14.1'); None outside torch 2."""
    major, minor = (release(torch_version) + (0, 0))[:2]
    return f"0.{minor + TORCHVISION_MINOR_OFFSET}" if major == 2 else None


def pip_install(requirements, torch_version):
    """The command that installs `requirements` with this Python, from the index the installed
    torch came from: its local version label names it (+cpu, +cu126, ...; none: PyPI)."""
    python = sys.executable or "python"
    if python.startswith(os.getcwd() + os.sep):
        python = os.path.relpath(python)
    label = (torch_version or "").partition("+")[2]
    index = f" --index-url {WHEEL_INDEX}/{label}" if label else ""
    return f"{python} -m pip install {requirements}{index}"


def version_problem(torch_version, torchvision_version):
    """What is wrong with this pair, on one line with the command that fixes it; None when usable."""
    minimum = ".".join(map(str, MIN_TORCH))
    if torch_version is None:
        return (f"torch is not installed; install torch >= {minimum} with its torchvision (README, Quick "
                f"start): {pip_install('torch torchvision', None)}")
    if release(torch_version)[:2] < MIN_TORCH:
        upgrade = f'--upgrade "torch>={minimum}" torchvision'
        return (f"torch {torch_version} (torchvision {torchvision_version or 'not installed'}) is older than this "
                f"project supports (torch >= {minimum}); fix: {pip_install(upgrade, torch_version)}")
    series = ".".join(map(str, release(torch_version)[:2]))
    wanted = matching_torchvision(torch_version)
    requirement = f'"torchvision=={wanted}.*"' if wanted else "torchvision"
    if torchvision_version is None:
        return (f"torchvision is not installed (torch {series} goes with torchvision {wanted}); fix: "
                f"{pip_install(requirement, torch_version)}")
    if wanted is not None and ".".join(map(str, release(torchvision_version)[:2])) != wanted:
        return (f"torchvision {torchvision_version} does not match torch {torch_version} (torch {series} goes with "
                f"torchvision {wanted}); fix: {pip_install(requirement, torch_version)}")
    return None


def check_install():
    """Raise InstallError naming both versions and the fix when the installed pair is unusable."""
    problem = version_problem(installed_version("torch"), installed_version("torchvision"))
    if problem:
        raise InstallError(problem)


def import_failure(err):
    """The InstallError for the RuntimeError that importing torchvision raises when its
    binaries were built for another torch (metadata that match, binaries that do not: e.g. a
    CPU torch with a CUDA torchvision); None when `err` is something else."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if "torchvision" not in first:
        return None
    torch_version, torchvision_version = installed_version("torch"), installed_version("torchvision")
    wanted = matching_torchvision(torch_version or "")
    requirement = f'"torchvision=={wanted}.*"' if wanted else "torchvision"
    return InstallError(f"torchvision {torchvision_version} does not load with torch {torch_version} ({first}): "
                        f"they were built for different releases or devices (CPU / CUDA); fix: "
                        f"{pip_install('--force-reinstall --no-deps ' + requirement, torch_version)}")


@contextlib.contextmanager
def checked_imports():
    """Wrap the imports of an entry point that need torch: an unusable install ends the
    process with one `error:` line and exit status 2 instead of a traceback."""
    try:
        check_install()
        try:
            yield
        except RuntimeError as err:
            failure = import_failure(err)
            if failure is None:
                raise
            raise failure from None
    except InstallError as err:
        report_error(str(err))
        raise SystemExit(2) from None


def main():
    try:
        check_install()
    except InstallError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
