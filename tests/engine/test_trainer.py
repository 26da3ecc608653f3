"""engine/loop.py in-process: the run folder a short run writes, resuming (bit for bit on the
CPU), Ctrl-C / SIGTERM, a finished or past-budget run folder, and run_mode=infer's
evaluation of the result. tests/test_main.py runs the same paths through main.py."""
import contextlib
import json
import multiprocessing
import os
import signal

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.loop import Interrupted, Trainer, train
from engine.validation import evaluate_checkpoint
from utils.errors import ConfigError
from utils.logger import close_logger, setup_logger
from utils.threads import restored_threads

CPU = torch.device("cpu")
# The metrics of demo.yml's tasks, for the final and the preliminary predictions alike.
METRIC_NAMES = {"semseg": {"mIoU"}, "human_parts": {"mIoU"}, "sal": {"maxF"}, "normals": {"mErr", "rmse"},
                "edge": {"odsF"}}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread, as the subprocess tests' OMP_NUM_THREADS=1: the same reduction
    order in every run, so weights compare bit for bit."""
    with restored_threads():
        torch.set_num_threads(1)
        yield


@pytest.fixture
def run_cfg(tiny_cfg, pascal_db, tmp_path):
    """run_cfg(*opts): the tiny demo config on the session PASCAL dataset, its run folder
    under tmp_path (`folder` picks another one, for a second run to compare with)."""
    def load(*opts, folder="run"):
        return tiny_cfg(f"db_root={pascal_db.db_root}", f"output_dir={tmp_path / folder}", *opts)
    return load


@contextlib.contextmanager
def run_logger(cfg):
    """The project logger writing <run folder>/log.txt, as main.py sets it up; closed on exit."""
    logger = setup_logger(cfg.run_dir)
    try:
        yield logger
    finally:
        close_logger(logger)


@contextlib.contextmanager
def built(cfg):
    """A Trainer of `cfg` with its logger; both closed on exit (loader, TensorBoard, log.txt)."""
    with run_logger(cfg) as logger:
        trainer = Trainer(cfg, CPU, logger)
        try:
            yield trainer
        finally:
            trainer.close()


def run(cfg):
    """Train `cfg` to its end in its run folder; returns the last evaluation's metrics."""
    with built(cfg) as trainer:
        return trainer.train()


def log_of(cfg):
    with open(f"{cfg.run_dir}/log.txt", encoding="utf-8") as handle:
        return handle.read()


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def history(cfg):
    with open(f"{cfg.run_dir}/metrics.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def last(cfg):
    return load_checkpoint(f"{cfg.run_dir}/last.pth")


def assert_same_tensors(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def signal_at(monkeypatch, at, *signums):
    """Raise `signums` in this process during the training step of iteration `at` (its
    handler runs before the step returns: `raise_signal` delivers to the calling thread)."""
    step = Trainer.train_step

    def train_step(self, iteration):
        step(self, iteration)
        if iteration == at:
            for signum in signums:
                signal.raise_signal(signum)

    monkeypatch.setattr(Trainer, "train_step", train_step)


def assert_metric_layout(metrics):
    """Final metrics per task, and the preliminary predictions' under "prelim", same names."""
    assert set(metrics) == set(METRIC_NAMES) | {"prelim"}
    assert set(metrics["prelim"]) == set(METRIC_NAMES)
    for task, names in METRIC_NAMES.items():
        assert set(metrics[task]) == names and set(metrics["prelim"][task]) == names, task
        for value in (*metrics[task].values(), *metrics["prelim"][task].values()):
            assert isinstance(value, float) and value == value, task  # a number, not NaN
    assert 0.0 <= metrics["semseg"]["mIoU"] <= 100.0 and metrics["normals"]["mErr"] > 0


# ---------------------------------------------------------------------------------------
# A short run and its run folder
# ---------------------------------------------------------------------------------------
def test_a_short_run_writes_the_run_folder_and_scores_final_and_preliminary_predictions(run_cfg):
    cfg = run_cfg("max_iter=4", "val_interval=2")
    with run_logger(cfg) as logger:  # main.py's call: Trainer, train(), close, then the summary
        metrics = train(cfg, CPU, logger, config_exp="configs/demo.yml", opts=["max_iter=4"])

    for name in ("last.pth", "best.pth", "config.yaml", "metrics.json", "metrics.jsonl", "log.txt"):
        assert os.path.isfile(os.path.join(cfg.run_dir, name)), name
    assert os.listdir(os.path.join(cfg.run_dir, "tb"))
    assert_metric_layout(metrics)
    stored = read_json(f"{cfg.run_dir}/metrics.json")
    assert stored == {"iteration": 4, "checkpoint": f"{cfg.run_dir}/last.pth", **metrics}
    assert [line["iteration"] for line in history(cfg)] == [2, 4]  # one line per evaluation
    assert history(cfg)[-1] == {"iteration": 4, **metrics}
    assert_metric_layout({k: v for k, v in history(cfg)[0].items() if k != "iteration"})

    checkpoint = last(cfg)
    assert checkpoint["iteration"] == 4 and checkpoint["evaluated_at"] == 4
    assert load_checkpoint(f"{cfg.run_dir}/best.pth")["iteration"] == checkpoint["best_iteration"]
    log = log_of(cfg)
    assert "training demo: 12 train / 4 val images, 1 process(es) on cpu, 4 iterations (6 per epoch)" in log
    assert [f"iter {i}/4 loss" in log for i in range(1, 5)] == [True] * 4  # log_interval=1
    assert "evaluation at iteration 2:" in log and "evaluation at iteration 4:" in log
    summary = log.split("run finished: iteration 4/4")[1]
    assert "main.py --config_exp configs/demo.yml --run_mode infer" in summary
    assert f"{cfg.run_dir}/best.pth --opts max_iter=4" in summary


def test_checkpoints_between_evaluations_follow_ckpt_interval(run_cfg):
    cfg = run_cfg("max_iter=5", "val_interval=100", "ckpt_interval=2")
    saved = []
    with built(cfg) as trainer:
        save_last = trainer.checkpointer.save_last
        trainer.checkpointer.save_last = lambda iteration: (saved.append(iteration), save_last(iteration))
        trainer.train()
    assert saved == [2, 4, 5]  # every ckpt_interval, and at the final evaluation
    assert [line["iteration"] for line in history(cfg)] == [5]  # the last iteration is always evaluated


# ---------------------------------------------------------------------------------------
# Ctrl-C / SIGTERM
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_request_ends_the_current_iteration_saves_and_restores_the_handlers(run_cfg, monkeypatch, signum):
    cfg = run_cfg("max_iter=6", "val_interval=100", "ckpt_interval=100")
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal_at(monkeypatch, 2, signum)
    with built(cfg) as trainer:
        with pytest.raises(Interrupted):
            trainer.train()
        assert trainer.iteration == 2  # iteration 3 never started
        assert trainer.checkpointer.saved_at == 2 and trainer.checkpointer.evaluated_at is None
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    checkpoint = last(cfg)
    assert checkpoint["iteration"] == 2 and checkpoint["evaluated_at"] is None
    assert "interrupted at iteration 2/6: saved" in log_of(cfg) and "run the same command to resume" in log_of(cfg)
    assert "evaluation at" not in log_of(cfg)


def test_a_stop_request_at_a_checkpoint_iteration_saves_once(run_cfg, monkeypatch):
    cfg = run_cfg("max_iter=6", "val_interval=100", "ckpt_interval=2")
    signal_at(monkeypatch, 4, signal.SIGTERM)
    saved = []
    with built(cfg) as trainer:
        save_last = trainer.checkpointer.save_last
        trainer.checkpointer.save_last = lambda iteration: (saved.append(iteration), save_last(iteration))
        with pytest.raises(Interrupted):
            trainer.train()
    assert saved == [2, 4] and last(cfg)["iteration"] == 4


def test_a_stop_request_during_the_last_iteration_lets_the_run_finish(run_cfg, monkeypatch):
    cfg = run_cfg("max_iter=3", "val_interval=100")
    signal_at(monkeypatch, 3, signal.SIGINT)
    metrics = run(cfg)
    assert_metric_layout(metrics)
    assert last(cfg)["iteration"] == last(cfg)["evaluated_at"] == 3
    assert "interrupted" not in log_of(cfg)


def test_a_second_ctrl_c_stops_at_once_without_saving(run_cfg, monkeypatch):
    cfg = run_cfg("max_iter=6", "val_interval=100", "ckpt_interval=100")
    handler = signal.getsignal(signal.SIGINT)
    signal_at(monkeypatch, 2, signal.SIGINT, signal.SIGINT)
    with built(cfg) as trainer:
        with pytest.raises(KeyboardInterrupt):
            trainer.train()
        assert trainer.iteration == 2 and trainer.checkpointer.saved_at == 0
    assert signal.getsignal(signal.SIGINT) is handler
    assert not os.path.exists(f"{cfg.run_dir}/last.pth")


def test_an_interrupted_run_with_loader_workers_ends_them_on_close(run_cfg, monkeypatch):
    cfg = run_cfg("max_iter=6", "val_interval=100", "ckpt_interval=100", "nworkers=1")
    before = {process.pid for process in multiprocessing.active_children()}
    signal_at(monkeypatch, 2, signal.SIGINT)
    with built(cfg) as trainer:
        with pytest.raises(Interrupted):
            trainer.train()
        workers = [p for p in multiprocessing.active_children() if p.pid not in before]
        assert len(workers) == 1  # the persistent training loader's
        trainer.close()  # what engine.loop.train does in its finally; closing twice is harmless
        assert [p for p in multiprocessing.active_children() if p.pid not in before] == []
    assert last(cfg)["iteration"] == 2


# ---------------------------------------------------------------------------------------
# Resuming
# ---------------------------------------------------------------------------------------
def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(run_cfg, monkeypatch):
    opts = ("max_iter=6", "val_interval=100", "ckpt_interval=100")
    straight = run_cfg(*opts, folder="straight")
    run(straight)

    cfg = run_cfg(*opts)
    with monkeypatch.context() as patch:
        signal_at(patch, 3, signal.SIGINT)
        with pytest.raises(Interrupted):
            run(cfg)
    assert last(cfg)["iteration"] == 3
    with built(cfg) as trainer:  # a new process, as the same command started again
        assert trainer.start_iter == 3
        metrics = trainer.train()
    assert f"resumed from {cfg.run_dir}/last.pth at iteration 3" in log_of(cfg)
    assert "iter 4/6 loss" in log_of(cfg).split("resumed from")[1]
    assert_metric_layout(metrics)
    resumed, uninterrupted = last(cfg), last(straight)
    assert resumed["iteration"] == uninterrupted["iteration"] == 6
    assert_same_tensors(resumed["model"], uninterrupted["model"])
    for a, b in zip(resumed["optimizer"]["state"].values(), uninterrupted["optimizer"]["state"].values()):
        assert_same_tensors(a, b)
    assert resumed["scheduler"] == uninterrupted["scheduler"]
    assert history(cfg) == history(straight)


def test_a_larger_budget_continues_from_the_last_iteration(run_cfg):
    # A constant rate: the poly schedule's rates depend on the budget, so a run trained to 3 of 3
    # then continued to 6 cannot equal one planned for 6 from the start.
    opts = ("scheduler=constant", "val_interval=3")
    straight = run_cfg(*opts, "max_iter=6", folder="straight")
    run(straight)

    run(run_cfg(*opts, "max_iter=3"))
    cfg = run_cfg(*opts, "max_iter=6")
    with built(cfg) as trainer:
        assert trainer.start_iter == 3 and trainer.total_iters == 6
        trainer.train()
    assert f"resumed from {cfg.run_dir}/last.pth at iteration 3" in log_of(cfg)
    assert [line["iteration"] for line in history(cfg)] == [3, 6]
    assert last(cfg)["iteration"] == 6
    assert_same_tensors(last(cfg)["model"], last(straight)["model"])
    assert history(cfg) == history(straight)


# ---------------------------------------------------------------------------------------
# A finished run, a run past its budget
# ---------------------------------------------------------------------------------------
def test_a_finished_run_started_again_has_nothing_to_do(run_cfg):
    cfg = run_cfg("max_iter=2", "val_interval=100")
    run(cfg)
    with open(f"{cfg.run_dir}/last.pth", "rb") as handle:
        before = handle.read()
    with built(cfg) as trainer:
        assert trainer.start_iter == trainer.total_iters == 2
        assert trainer.train() is None  # no evaluation ran in this session
    assert f"nothing to do: {cfg.run_dir}/last.pth is already at iteration 2 of 2" in log_of(cfg)
    with open(f"{cfg.run_dir}/last.pth", "rb") as handle:
        assert handle.read() == before
    assert [line["iteration"] for line in history(cfg)] == [2]


def test_a_run_stopped_at_its_new_budget_is_evaluated_not_trained(run_cfg, monkeypatch):
    cfg = run_cfg("max_iter=6", "val_interval=100", "ckpt_interval=100")
    with monkeypatch.context() as patch:
        signal_at(patch, 3, signal.SIGTERM)
        with pytest.raises(Interrupted):
            run(cfg)
    weights = last(cfg)["model"]

    cfg = run_cfg("max_iter=3", "val_interval=100", "ckpt_interval=100")  # the budget lowered to where it stopped
    metrics = run(cfg)
    assert_metric_layout(metrics)
    checkpoint = last(cfg)
    assert checkpoint["iteration"] == checkpoint["evaluated_at"] == 3
    assert_same_tensors(checkpoint["model"], weights)  # evaluated, not trained
    assert [line["iteration"] for line in history(cfg)] == [3]
    assert "iter 4" not in log_of(cfg) and "evaluation at iteration 3:" in log_of(cfg)


def test_a_run_past_the_commands_budget_is_a_config_error_and_left_untouched(run_cfg):
    run(run_cfg("max_iter=3", "val_interval=100"))
    cfg = run_cfg("max_iter=2", "val_interval=100")
    with open(f"{cfg.run_dir}/last.pth", "rb") as handle:
        before = handle.read()
    with run_logger(cfg) as logger:
        with pytest.raises(ConfigError) as raised:
            Trainer(cfg, CPU, logger)
    message = str(raised.value)
    assert f"{cfg.run_dir}/last.pth is already at iteration 3, past this command's last iteration 2 (max_iter=2)" \
        in message
    assert "--run_mode infer" in message and f"{cfg.run_dir}/best.pth" in message and "max_iter above 3" in message
    with open(f"{cfg.run_dir}/last.pth", "rb") as handle:
        assert handle.read() == before


def test_a_different_experiment_in_the_run_folder_is_a_config_error(run_cfg):
    run(run_cfg("max_iter=2", "val_interval=100"))
    cfg = run_cfg("max_iter=4", "val_interval=100", "optimizer_kwargs.lr=0.5")
    with run_logger(cfg) as logger:
        with pytest.raises(ConfigError) as raised:
            Trainer(cfg, CPU, logger)
    assert f"{cfg.run_dir} holds a run with a different config (optimizer_kwargs.lr: 0.001 -> 0.5)" in str(raised.value)
    assert last(cfg)["iteration"] == 2


# ---------------------------------------------------------------------------------------
# run_mode=infer on the result
# ---------------------------------------------------------------------------------------
def test_run_mode_infer_scores_the_checkpoint_as_the_last_evaluation_did(run_cfg):
    cfg = run_cfg("max_iter=2", "val_interval=100")
    trained = run(cfg)
    with run_logger(cfg) as logger:
        metrics = evaluate_checkpoint(cfg, f"{cfg.run_dir}/last.pth", CPU, logger)
    assert metrics == trained  # one metric implementation, same thresholds (3) in both modes here
    stored = read_json(f"{cfg.run_dir}/infer/metrics.json")
    assert stored == {"iteration": 2, "checkpoint": f"{cfg.run_dir}/last.pth", **trained}
