"""benchmarks.normals_lengths: the raw normals' lengths and errors of a run folder, scored as
the evaluation scores them."""
import json

import pytest
import torch

from benchmarks.normals_lengths import main
from engine.checkpoint import save_checkpoint
from models import build_model
from utils.config import stored_config, write_yaml


def run_folder(folder, tiny_cfg, db_root, *opts):
    """A run folder as main.py leaves one: config.yaml and last.pth (random weights, seed 0)."""
    cfg = tiny_cfg(f"db_root={db_root}", *opts)
    folder.mkdir()
    write_yaml(str(folder / "config.yaml"), stored_config(cfg))
    torch.manual_seed(0)
    save_checkpoint(str(folder / "last.pth"), {"model": build_model(cfg).state_dict()})
    return str(folder)


def test_lengths_of_a_plain_and_a_corrected_refinement(tmp_path, tiny_cfg, pascal_db, capsys):
    plain = run_folder(tmp_path / "plain", tiny_cfg, pascal_db.db_root)
    corrected = run_folder(tmp_path / "corrected", tiny_cfg, pascal_db.db_root,
                           "model_kwargs.refine_from_prelim=normals")
    assert main([plain, corrected]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["run", "|prelim|", "|final|"]
    assert [line.split()[0] for line in lines[1:3]] == [plain, corrected]
    results = json.loads(lines[-1])
    p, c = results[plain], results[corrected]
    # the same seed: the same preliminary normals
    assert p["prelim"] == pytest.approx(c["prelim"]) and p["prelim_err"] == pytest.approx(c["prelim_err"])
    # with the switch the untrained refinement is the preliminary prediction itself
    assert c["correction"] == 0 and c["final"] == pytest.approx(c["prelim"])
    assert c["final_err"] == pytest.approx(c["prelim_err"])
    # without it the refined normals are another map
    assert p["correction"] > 0 and p["final_err"] != pytest.approx(p["prelim_err"])
    assert all(0 < r[k] < 180 for r in results.values() for k in ("prelim_err", "final_err"))


def test_a_config_without_normals_is_an_error(tmp_path, tiny_cfg, pascal_db, capsys):
    run = run_folder(tmp_path / "run", tiny_cfg, pascal_db.db_root, "task_dictionary.include_normals=false")
    assert main([run]) == 2
    assert "the config has no normals task" in capsys.readouterr().err
