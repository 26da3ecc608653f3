"""utils.install: a torch / torchvision pair that cannot work is one line naming both versions
and the pip command that fixes it, from run.sh, main.py and inference.py, before (or instead
of) the traceback of `import torchvision`. The subprocess tests fake the installed packages
with a folder on PYTHONPATH (a torchvision .dist-info, and a torchvision package whose import
fails as a mismatched build's does); the venv itself is not touched."""
import importlib.metadata
import os
import subprocess
import sys

import pytest

from tests.entry_points import one_error_line
from utils import install

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH = importlib.metadata.version("torch")
NMS_ERROR = "operator torchvision::nms does not exist"


def test_matching_pairs_pass_and_the_rule_is_minor_plus_15():
    assert install.matching_torchvision("2.14.1") == "0.29"
    assert install.matching_torchvision("2.6.0+cu126") == "0.21"
    for pair in (("2.14.1", "0.29.1"), ("2.14.1+cpu", "0.29.0+cpu"), ("2.6.0", "0.21.0"), ("2.15.0.dev20260101", "0.30.0")):
        assert install.version_problem(*pair) is None, pair


def test_a_mismatch_names_both_versions_and_the_fix():
    message = install.version_problem("2.14.1", "0.28.0")
    assert "torchvision 0.28.0 does not match torch 2.14.1" in message and "goes with torchvision 0.29" in message
    assert message.endswith('-m pip install "torchvision==0.29.*"') and "\n" not in message
    # a CPU or CUDA build: the fix installs from the index the installed torch came from
    cpu = install.version_problem("2.14.1+cpu", "0.30.0")
    assert cpu.endswith('"torchvision==0.29.*" --index-url https://download.pytorch.org/whl/cpu')
    assert "whl/cu126" in install.version_problem("2.7.0+cu126", "0.21.0+cu126")


def test_an_old_torch_or_a_missing_package_is_named():
    old = install.version_problem("2.5.1", "0.20.1")
    assert "torch 2.5.1" in old and "0.20.1" in old and "torch >= 2.6" in old and '"torch>=2.6"' in old
    assert "torchvision is not installed" in install.version_problem("2.14.1", None)
    assert "torch is not installed" in install.version_problem(None, None)


def test_an_import_failure_of_a_mismatched_build_becomes_the_install_error():
    error = install.import_failure(RuntimeError(NMS_ERROR))
    assert isinstance(error, install.InstallError) and NMS_ERROR in str(error)
    assert f"torch {TORCH}" in str(error) and "--force-reinstall --no-deps" in str(error)
    assert install.import_failure(RuntimeError("CUDA out of memory")) is None


def fake_torchvision(folder, version, import_error=None):
    """A PYTHONPATH folder that shadows the installed torchvision: its metadata says `version`;
    with `import_error`, importing it raises that RuntimeError (as a build for another torch does)."""
    info = folder / f"torchvision-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torchvision\nVersion: {version}\n")
    if import_error:
        (folder / "torchvision").mkdir()
        (folder / "torchvision" / "__init__.py").write_text(f"raise RuntimeError({import_error!r})\n")
    return {**os.environ, "PYTHONPATH": str(folder), "PYTHON": sys.executable, "NGPUS": "1"}


def run(command, env):
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_every_entry_point_stops_on_a_mismatch_with_one_line(tmp_path):
    env = fake_torchvision(tmp_path, "0.28.0")
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    commands = {
        "run.sh": ["bash", "run.sh", "--opts", "max_iter=1"],
        "main.py": [sys.executable, "main.py", "--config_exp", "configs/demo.yml"],
        "inference.py": [sys.executable, "inference.py", "--checkpoint", str(tmp_path / "x.pth"), "--image_path",
                         str(image), "--save_dir", str(tmp_path / "out")],
    }
    for name, command in commands.items():
        proc = run(command, env)
        assert proc.returncode == 2, (name, proc.stdout[-2000:], proc.stderr[-3000:])
        one_error_line(proc, "torchvision 0.28.0 does not match", f"torch {TORCH}", "pip install",
                       '"torchvision==0.29.*"' if TORCH.startswith("2.14") else "torchvision==")
        assert "Generating" not in proc.stdout  # run.sh checks before it generates the demo data
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_torchvision_that_fails_to_import_is_one_line(tmp_path):
    # metadata that match (so only the import can tell), binaries that do not
    env = fake_torchvision(tmp_path, install.matching_torchvision(TORCH) + ".0", import_error=NMS_ERROR)
    for command in ([sys.executable, "main.py", "--config_exp", "configs/demo.yml"],
                    [sys.executable, "inference.py", "--checkpoint", "x.pth", "--image_path", "x.png", "--save_dir",
                     str(tmp_path / "out")]):
        proc = run(command, env)
        assert proc.returncode == 2, proc.stderr[-3000:]
        line = one_error_line(proc, NMS_ERROR, f"torch {TORCH}", "pip install --force-reinstall")
        assert "Traceback" not in line
