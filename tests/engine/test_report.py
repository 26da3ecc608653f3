"""engine/report.py: the run's evaluation history (metrics.jsonl)."""
import json
import os

from engine.report import append_history, read_history


def metrics(miou, prelim):
    return {"semseg": {"mIoU": miou}, "prelim": {"semseg": {"mIoU": prelim}}}


def test_history_keeps_every_evaluation_once_in_order(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert read_history(str(path)) == []
    for iteration, miou in ((0, 1.0), (200, 5.0), (400, 9.0)):
        append_history(str(path), iteration, metrics(miou, miou - 1))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [0, 200, 400]
    assert lines[2] == {"iteration": 400, "semseg": {"mIoU": 9.0}, "prelim": {"semseg": {"mIoU": 8.0}}}
    # a run resumed from its checkpoint of iteration 200 evaluates 400 again: no second line
    # for 400, and a later evaluation of 200 (an evaluation-only rerun) replaces its line
    append_history(str(path), 400, metrics(9.5, 8.5))
    assert [(h["iteration"], h["semseg"]["mIoU"]) for h in read_history(str(path))] == [(0, 1.0), (200, 5.0),
                                                                                         (400, 9.5)]
    append_history(str(path), 200, metrics(6.0, 5.0))
    assert [(h["iteration"], h["semseg"]["mIoU"]) for h in read_history(str(path))] == [(0, 1.0), (200, 6.0)]
    assert os.listdir(tmp_path) == ["metrics.jsonl"]  # no temporary file left behind
