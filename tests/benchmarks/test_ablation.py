"""benchmarks.ablation: hand-worked summary rows, and one tiny end-to-end run that resumes."""
import json
import math
import os
import shutil

import pytest
from PIL import Image

from benchmarks import ablation

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLUMNS = [("semseg", "mIoU", False), ("normals", "mErr", True)]


def run(semseg, normals, prelim=None):
    metrics = {"semseg": {"mIoU": semseg}, "normals": {"mErr": normals}}
    if prelim is not None:
        metrics["prelim"] = {"semseg": {"mIoU": prelim[0]}, "normals": {"mErr": prelim[1]}}
    return {"metrics": metrics, "seconds": 60.0}


def test_rows_are_hand_worked_against_the_baseline_mean():
    # baseline mean: semseg 15, normals 40. feature: semseg (30 - 15) / 15 = +100 %, normals
    # -(20 - 40) / 40 = +50 % -> Delta_m +75 in both seeds. baseline seeds: (-33.3 + 0) / 2 and
    # (+33.3 + 0) / 2 -> mean 0, std 23.57. feature's preliminary 15 / 40 is the baseline mean:
    # refinement gain semseg +15, normals +20 (lower is better), Delta_m 75 points.
    runs = {"baseline": {0: run(10.0, 40.0, prelim=(10.0, 40.0)), 1: run(20.0, 40.0, prelim=(20.0, 40.0))},
            "feature": {0: run(30.0, 20.0, prelim=(15.0, 40.0)), 1: run(30.0, 20.0, prelim=(15.0, 40.0))}}
    rows = ablation.summarise(runs, COLUMNS, "PASCALContext")
    assert rows["baseline"]["metrics"]["semseg.mIoU"] == pytest.approx((15.0, math.sqrt(50.0)))
    assert rows["baseline"]["delta_m"] == pytest.approx((0.0, 100 / 3 / math.sqrt(2)))
    assert rows["feature"]["delta_m"] == pytest.approx((75.0, 0.0))
    gain = rows["feature"]["refinement_gain"]
    assert {k: gain[k] for k in ("semseg.mIoU", "normals.mErr", "delta_m")} == {
        "semseg.mIoU": pytest.approx((15.0, 0.0)), "normals.mErr": pytest.approx((20.0, 0.0)),
        "delta_m": pytest.approx((75.0, 0.0))}
    assert rows["baseline"]["refinement_gain"]["delta_m"] == pytest.approx((0.0, 0.0))
    assert rows["feature"]["seconds"] == pytest.approx((60.0, 0.0))
    [(other, gap, needed, holds)] = ablation.ordering(rows)
    assert other == "baseline" and gap == pytest.approx(75.0) and needed == pytest.approx(47.14, abs=0.01) and holds
    table = ablation.markdown(rows, COLUMNS, "# test", ablation.ordering(rows))
    assert "| feature | 30.00 ± 0.00 | 20.00 ± 0.00 | +75.00 ± 0.00 | 1.0 |" in table
    assert "- feature vs baseline: gap +75.00, needed > 47.14: holds" in table


def test_one_seed_has_no_spread_and_proves_no_ordering():
    runs = {"baseline": {0: run(10.0, 40.0)}, "feature": {0: run(30.0, 20.0)}}
    rows = ablation.summarise(runs, COLUMNS, "PASCALContext")
    assert math.isnan(rows["feature"]["delta_m"][1])
    assert math.isnan(rows["feature"]["refinement_gain"]["semseg.mIoU"][0])  # no prelim section
    [(_, _, needed, holds)] = ablation.ordering(rows)
    assert math.isnan(needed) and not holds
    table = ablation.markdown(rows, COLUMNS, "# test", ablation.ordering(rows))
    assert "| feature | 30.00 | 20.00 | +" in table and "| feature | n/a | n/a | n/a |" in table


def test_gain_curves_average_the_seeds_at_each_iteration():
    # feature: seed 0 gains semseg +2 then +4, seed 1 +4 then +8; normals (lower is better)
    # final 30 vs prelim 32 -> +2 in both. The baseline has no refinement stage: no curve.
    def line(iteration, semseg, prelim_semseg):
        return {"iteration": iteration, "semseg": {"mIoU": semseg}, "normals": {"mErr": 30.0},
                "prelim": {"semseg": {"mIoU": prelim_semseg}, "normals": {"mErr": 32.0}}}
    runs = {"baseline": {0: {"history": [line(100, 10.0, 10.0)]}},
            "feature": {0: {"history": [line(100, 12.0, 10.0), line(200, 14.0, 10.0)]},
                        1: {"history": [line(100, 14.0, 10.0), line(200, 18.0, 10.0)]}}}
    curves = ablation.gain_curves(runs, COLUMNS)
    assert list(curves) == ["feature"]
    (it1, mean1, std1, n1), (it2, mean2, std2, n2) = curves["feature"]["semseg.mIoU"]
    assert (it1, n1, it2, n2) == (100, 2, 200, 2)
    assert (mean1, std1, mean2, std2) == pytest.approx((3.0, math.sqrt(2.0), 6.0, math.sqrt(8.0)))
    assert [p[1] for p in curves["feature"]["normals.mErr"]] == pytest.approx([2.0, 2.0])
    table = ablation.gain_markdown(curves, COLUMNS)
    assert "| 100 | +3.00 ± 1.41 | +2.00 ± 0.00 |" in table and "| 200 | +6.00 ± 2.83 |" in table


def test_runs_of_another_invocation_with_the_same_settings_are_kept(tmp_path):
    expected = {"config": "configs/demo.yml", "iters": 3000, "opts": ["num_threads=1"]}
    recorded = {"baseline_s1": {"variant": "baseline", "seed": 1, **run(10.0, 40.0)},
                "feature_s0": {"variant": "feature", "seed": 0, **run(1.0, 1.0)}}
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps({**expected, "runs": recorded}))
    assert ablation.recorded_runs(str(path), expected) == recorded
    assert ablation.recorded_runs(str(path), {**expected, "iters": 2000}) == {}  # another budget: not the same runs
    mine = {"feature": {0: run(30.0, 20.0)}, "prediction": {}}
    merged = ablation.merge_runs(recorded, mine)
    assert list(merged) == ["baseline", "feature"]  # VARIANTS order, empty rows left out
    assert merged["feature"][0]["metrics"]["semseg"]["mIoU"] == 30.0  # this invocation's run wins
    assert merged["baseline"][1]["metrics"]["normals"]["mErr"] == 40.0


TINY = ["trBatch=2", "valBatch=2", "nworkers=0", "eval_at_start=false", "val_interval=1", "backbone_kwargs.depth=1",
        "backbone_kwargs.num_taps=1", "model_kwargs.embed_dim=16", "eval_kwargs.edge_thresholds_train=3",
        "eval_kwargs.edge_workers=1", "log_interval=1"]


def test_end_to_end_two_variants_and_a_rerun_trains_nothing(tmp_path, monkeypatch):
    out = str(tmp_path / "ablation")
    argv = ["--config_exp", os.path.join(ROOT, "configs", "demo.yml"), "--variants", "baseline,feature",
            "--seeds", "1", "--iters", "2", "--out", out, "--train", "4", "--val", "2", "--size", "32",
            "--opts", *TINY]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert ablation.main(argv) == 0
    assert sorted(os.listdir(out)) == ["ablation.json", "ablation.md", "ablation.png", "ablation_gain.png", "data",
                                       "runs"]
    result = json.load(open(os.path.join(out, "ablation.json")))
    assert sorted(result["runs"]) == ["baseline_s0", "feature_s0"]
    for name, entry in result["runs"].items():
        assert entry["metrics"]["iteration"] == 2 and entry["seconds"] > 0
        assert 0 <= entry["metrics"]["edge"]["odsF"] <= 100
        assert os.path.isfile(os.path.join(out, "runs", name, "last.pth"))
        # every evaluation kept (val_interval 1): the run's metrics.jsonl, copied
        history = [json.loads(line) for line in open(os.path.join(out, "runs", name, "metrics.jsonl"))]
        assert [line["iteration"] for line in history] == [1, 2] and entry["history"] == history
        assert history[-1]["semseg"] == entry["metrics"]["semseg"] and "prelim" in history[0]
    gain = Image.open(os.path.join(out, "ablation_gain.png"))
    assert gain.width > 1000 and gain.height > 300  # five task panels side by side
    # the baseline has no refinement stage: its final and preliminary scores are the same
    baseline = result["runs"]["baseline_s0"]["metrics"]
    assert {t: baseline["prelim"][t] for t in ("semseg", "edge")} == {t: baseline[t] for t in ("semseg", "edge")}
    assert result["rows"]["baseline"]["delta_m"][0] == pytest.approx(0.0)
    table = open(os.path.join(out, "ablation.md")).read()
    assert "| baseline |" in table and "| feature |" in table

    def no_training(argv):
        raise AssertionError(f"retrained: {argv}")

    monkeypatch.setattr(ablation.trainer, "main", no_training)
    assert ablation.main(argv) == 0  # both rows finished: nothing is trained again
    again = json.load(open(os.path.join(out, "ablation.json")))
    assert again["runs"]["feature_s0"]["seconds"] == result["runs"]["feature_s0"]["seconds"]

    # ablation.json alone resumes (the run folders of another machine or session are not needed)
    shutil.rmtree(os.path.join(out, "runs"))
    assert ablation.main(argv) == 0
    assert json.load(open(os.path.join(out, "ablation.json")))["runs"] == again["runs"]
    assert "Refinement gain of feature over training" in open(os.path.join(out, "ablation.md")).read()

    # the dataset is made once: other generation arguments for the same folder are refused
    assert ablation.main([*argv[:argv.index("--train")], "--train", "5", *argv[argv.index("--train") + 2:]]) == 2


def test_first_seed_trains_only_the_later_seeds(tmp_path, monkeypatch):
    trained = []

    def fake_run(args, db_root, variant, seed, recorded):
        trained.append((variant, seed))
        return {"iteration": 2}, [], 1.0, True

    monkeypatch.setattr(ablation, "train_run", fake_run)
    monkeypatch.setattr(ablation, "prepare_data", lambda *args: "db")
    monkeypatch.setattr(ablation, "write_outputs", lambda *args: None)
    argv = ["--config_exp", os.path.join(ROOT, "configs", "demo.yml"), "--variants", "baseline,feature",
            "--seeds", "3", "--iters", "2", "--out", str(tmp_path)]
    assert ablation.main([*argv, "--first_seed", "2"]) == 0
    assert trained == [("baseline", 2), ("feature", 2)]
    with pytest.raises(SystemExit):
        ablation.parse_args([*argv, "--first_seed", "3"])


def test_a_run_finished_by_a_parallel_invocation_keeps_its_wall_time(tmp_path, monkeypatch):
    """A run another invocation (same settings, other --first_seed) finished after this one
    started is taken from ablation.json as it is then, its seconds included."""
    argv = ["--config_exp", os.path.join(ROOT, "configs", "demo.yml"), "--variants", "feature",
            "--seeds", "2", "--iters", "2", "--out", str(tmp_path)]
    written = {}

    def fake_run(args, db_root, variant, seed, recorded):
        if seed == 0:  # meanwhile, the other invocation records seed 1
            size = (96, 96)
            (tmp_path / "ablation.json").write_text(json.dumps({**ablation.settings(args, size), "runs": {
                "feature_s1": {"variant": "feature", "seed": 1, "metrics": {"iteration": 2}, "seconds": 123.0,
                               "history": []}}}))
            return {"iteration": 2}, [], 1.0, True
        assert recorded is not None and recorded["seconds"] == 123.0
        return recorded["metrics"], recorded["history"], None, False

    monkeypatch.setattr(ablation, "train_run", fake_run)
    monkeypatch.setattr(ablation, "prepare_data", lambda *args: "db")
    monkeypatch.setattr(ablation, "write_outputs", lambda args, cfg, runs, size: written.update(runs))
    assert ablation.main(argv) == 0
    assert written["feature"][1]["seconds"] == 123.0
