"""GPUs, nodes and clusters: run.sh's process counts and SLURM variables (checked with a
stand-in Python that prints what run.sh would start, and a stand-in nvidia-smi), `--device`,
and pretrained weights on a machine without network access (no test downloads anything)."""
import os
import shlex
import socket
import subprocess
import sys
import time

import pytest
import torch

import main
from models import backbones
from utils.distributed import resolve_device
from utils.errors import CheckpointError, UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH_VARS = ("NGPUS", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "CUDA_VISIBLE_DEVICES", "RUN_MODE",
               "TRAINED_MODEL", "CHECKPOINT", "CONFIG", "DEMO_DATA")


class FakeBin:
    """A folder put first on PATH: a stand-in `python` that prints its arguments and, after
    `gpus(n)`, an nvidia-smi that lists n GPUs."""

    def __init__(self, folder):
        self.path = folder
        folder.mkdir()
        self.python = self._script("python", 'echo "PYTHON $*"')

    def _script(self, name, body):
        path = self.path / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
        return path

    def gpus(self, count):
        self._script("nvidia-smi", "".join(f'echo "GPU {i}: NVIDIA H100 (UUID: GPU-{i})"; ' for i in range(count)) + ":")


@pytest.fixture
def fake_bin(tmp_path):
    return FakeBin(tmp_path / "bin")


def run_sh(fake_bin, **env):
    """run.sh with a paper config (no demo data step) and the stand-in Python: (status, stdout,
    stderr, the argv of what it would exec)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in LAUNCH_VARS}
    env = {**base, "PATH": f"{fake_bin.path}{os.pathsep}{os.environ['PATH']}", "PYTHON": str(fake_bin.python),
           "CONFIG": "configs/pascal/resnet18_onelabel.yml", **env}
    proc = subprocess.run(["bash", "run.sh", "--opts", "max_iter=2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=env)
    started = [shlex.split(line)[1:] for line in proc.stdout.splitlines()
               if line.startswith("PYTHON ") and "main.py" in line]
    return proc.returncode, proc.stdout, proc.stderr, (started[0] if started else None)


def option(argv, name):
    return argv[argv.index(name) + 1]


def test_slurm_variables_become_the_launch_of_each_node(fake_bin):
    fake_bin.gpus(4)
    status, out, err, argv = run_sh(fake_bin, SLURM_NNODES="2", SLURM_NODEID="1", SLURM_GPUS_ON_NODE="4",
                                    SLURM_NTASKS_PER_NODE="1", SLURM_JOB_NODELIST="gpu[07-08]", SLURM_JOB_ID="123456")
    assert status == 0, err
    assert argv[:2] == ["-m", "utils.launch"]
    assert (option(argv, "--nnodes"), option(argv, "--node_rank"), option(argv, "--nproc_per_node")) == ("2", "1", "4")
    assert (option(argv, "--master_addr"), option(argv, "--master_port")) == ("gpu07", str(20000 + 123456 % 10000))
    assert argv[argv.index("main.py") + 1:][:2] == ["--config_exp", "configs/pascal/resnet18_onelabel.yml"]
    assert "node 1 of 2" in out and "gpu07:23456" in out


def test_slurm_node_lists_without_scontrol_and_with_it(fake_bin):
    for nodelist, first in (("cn5,cn6", "cn5"), ("a-gpu[3,5-7],b1", "a-gpu3"), ("node17", "node17")):
        status, _, err, argv = run_sh(fake_bin, SLURM_NNODES="2", SLURM_NODEID="0", SLURM_JOB_NODELIST=nodelist,
                                      SLURM_JOB_ID="7")
        assert status == 0 and option(argv, "--master_addr") == first, (nodelist, err)
    # SLURM's own expansion wins where it is installed
    fake_bin._script("scontrol", '[ "$1 $2 $3" = "show hostnames n[1-2]" ] && printf "n1\\nn2\\n"')
    status, _, err, argv = run_sh(fake_bin, SLURM_NNODES="2", SLURM_NODEID="0", SLURM_JOB_NODELIST="n[1-2]",
                                  SLURM_JOB_ID="7")
    assert status == 0 and option(argv, "--master_addr") == "n1", err


def test_explicit_variables_win_over_slurm_and_gpus_come_from_the_node(fake_bin):
    fake_bin.gpus(2)
    status, _, err, argv = run_sh(fake_bin, SLURM_NNODES="2", SLURM_NODEID="1", SLURM_JOB_NODELIST="x[1-2]",
                                  SLURM_JOB_ID="9", NNODES="1", NGPUS="2")
    assert status == 0, err
    assert argv[:3] == ["-m", "utils.launch", "--standalone"] and option(argv, "--nproc_per_node") == "2"
    # no SLURM_GPUS_ON_NODE: the visible GPUs, narrowed by CUDA_VISIBLE_DEVICES
    _, _, _, argv = run_sh(fake_bin, SLURM_NNODES="1", SLURM_NTASKS_PER_NODE="1")
    assert option(argv, "--nproc_per_node") == "2"
    _, _, _, argv = run_sh(fake_bin, CUDA_VISIBLE_DEVICES="1")
    assert argv[0] == "main.py"
    # a CPU-only SLURM node: its tasks per node
    (fake_bin.path / "nvidia-smi").unlink()
    _, _, _, argv = run_sh(fake_bin, SLURM_NNODES="1", SLURM_NTASKS_PER_NODE="3")
    assert option(argv, "--nproc_per_node") == "3"


def test_ngpus_above_the_visible_gpus_is_one_line(fake_bin):
    fake_bin.gpus(2)
    status, out, err, argv = run_sh(fake_bin, NGPUS="4")
    assert status == 2 and argv is None and out == ""
    assert err.strip() == ("error: NGPUS=4 but only 2 GPU(s) are visible on this node; set NGPUS=2 or fewer, or "
                           "choose the GPUs with CUDA_VISIBLE_DEVICES (docs/clusters.md)")
    status, _, err, _ = run_sh(fake_bin, NGPUS="2", CUDA_VISIBLE_DEVICES="3")
    assert status == 2 and "only 1 GPU(s)" in err and "CUDA_VISIBLE_DEVICES=3" in err
    for bad, fragment in ((dict(NGPUS="two"), "NGPUS must be"), (dict(NNODES="2", NODE_RANK="2"), "NODE_RANK must be")):
        status, _, err, _ = run_sh(fake_bin, **bad)
        assert status == 2 and err.count("\n") == 1 and fragment in err, err


def test_several_processes_without_a_gpu_are_announced(fake_bin):
    status, out, err, argv = run_sh(fake_bin, NGPUS="2")
    assert status == 0, err
    assert "NGPUS=2: 2 CPU processes on this node (no GPU visible): DDP over gloo" in out
    assert option(argv, "--nproc_per_node") == "2"
    assert "CPU processes" not in run_sh(fake_bin)[1]  # one process: nothing to announce


def test_the_slurm_script_runs_run_sh_once_per_node():
    script = open(os.path.join(ROOT, "docs", "slurm.sbatch"), encoding="utf-8").read()
    assert "#SBATCH --ntasks-per-node=1" in script and "srun" in script and "bash run.sh" in script
    assert subprocess.run(["bash", "-n", os.path.join(ROOT, "docs", "slurm.sbatch")]).returncode == 0


# ------------------------------------------------------------------------------ --device

def test_device_choices(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UsageError, match=r"--device cuda: CUDA is not available \(.*\); use --device cpu"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", local_rank=3, world_size=4) == torch.device("cuda", 1)  # shared round-robin
    assert resolve_device("cuda", local_rank=1, world_size=2) == torch.device("cuda", 1)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(UsageError, match=r"--device cuda:2: there is no GPU 2; 2 visible \(cuda:0..cuda:1"):
        resolve_device("cuda:2")
    with pytest.raises(UsageError, match="one GPU for one process"):
        resolve_device("cuda:0", world_size=2)
    with pytest.raises(UsageError, match="at most 2 process"):
        resolve_device("cuda", local_rank=2, world_size=3)


def test_device_cuda_without_a_gpu_is_one_line_before_anything_runs(capsys, monkeypatch, tiny_opts, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status = main.main(["--config_exp", "configs/demo.yml", "--device", "cuda", "--opts", *tiny_opts,
                        f"db_root={tmp_path}", f"output_dir={tmp_path}"])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert captured.err.startswith("error: --device cuda: CUDA is not available") and captured.err.count("\n") == 1
    assert not (tmp_path / "demo").exists()
    with pytest.raises(SystemExit):
        main.parse_args(["--config_exp", "c.yml", "--device", "gpu"])
    assert "use auto, cpu, cuda or cuda:N" in capsys.readouterr().err


# -------------------------------------------------------------- pretrained weights offline

def test_reachable_is_quick_and_defers_to_a_proxy(monkeypatch):
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as closed:  # a local port nobody listens on: refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    start = time.monotonic()
    assert not backbones._reachable(f"https://127.0.0.1:{port}/weights.pth", timeout=3.0)
    assert time.monotonic() - start < 3.0
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert backbones._reachable(f"https://127.0.0.1:{port}/weights.pth")


def test_pretrained_true_offline_fails_at_once_naming_the_local_file(monkeypatch, tmp_path):
    monkeypatch.setattr(backbones, "_reachable", lambda url, timeout=3.0: False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty torchvision cache
    with pytest.raises(CheckpointError) as err:
        backbones.build_backbone("resnet18", pretrained=True)
    message = str(err.value)
    assert "not in the cache" in message and "download.pytorch.org does not answer" in message
    assert "backbone_kwargs.pretrained to a local file" in message and "resnet18-f37072fd.pth" in message
    url = "https://huggingface.co/timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k/resolve/main/model.safetensors"
    monkeypatch.setattr(backbones, "_timm_hub_weights", lambda name: (None, url))
    with pytest.raises(CheckpointError, match="huggingface.co does not answer.*local file"):
        backbones.build_backbone("vit_tiny_patch16_224", pretrained=True, num_taps=2, depth=2)


def test_pretrained_true_reads_cached_weights_without_network(monkeypatch, tmp_path):
    import timm

    reference = timm.create_model("vit_tiny_patch16_224", num_classes=0, depth=2)
    torch.save(reference.state_dict(), tmp_path / "cached.pth")
    monkeypatch.setattr(backbones, "_reachable", lambda url, timeout=3.0: pytest.fail("no network is needed"))
    monkeypatch.setattr(backbones, "_timm_hub_weights", lambda name: (str(tmp_path / "cached.pth"), None))
    backbone = backbones.build_backbone("vit_tiny_patch16_224", pretrained=True, num_taps=2, depth=2)
    assert torch.equal(backbone.vit.patch_embed.proj.weight, reference.patch_embed.proj.weight)
