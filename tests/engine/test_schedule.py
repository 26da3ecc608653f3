"""engine/step.py build_scheduler and its wiring in engine/loop.py: the poly rate per iteration
(the project's default) or per epoch (the public release's: constant within an epoch, never
0), also across a resume in the middle of an epoch."""
import math

import pytest
import torch

from data.samplers import ResumableDistributedSampler
from engine.checkpoint import Checkpointer
from engine.loop import Trainer
from engine.step import build_scheduler

OFFICIAL = "configs/pascal/resnet18_feature_official.yml"


class Lines:
    """A logger that keeps its lines."""

    def __init__(self):
        self.lines = []

    def info(self, message, extra=None):
        self.lines.append(message)


def optimisation(cfg, total_iters, batches_per_epoch):
    """(model, optimizer, scheduler) of a one-weight model, as the trainer builds them."""
    model = torch.nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optimizer_kwargs.lr)
    return model, optimizer, build_scheduler(cfg, optimizer, total_iters, batches_per_epoch)


def train(model, optimizer, scheduler, iterations):
    """The learning rate of each iteration, stepped in the loop's order (optimizer, then scheduler)."""
    rates = []
    for _ in iterations:
        rates.append(optimizer.param_groups[0]["lr"])
        model.weight.sum().backward()
        optimizer.step()
        scheduler.step()
    return rates


def release_rate(lr0, epoch, epochs, power=0.9):
    """The release's poly rate in `epoch` (0-based) of `epochs`."""
    return lr0 * (1 - epoch / epochs) ** power


def test_epoch_schedule_is_constant_within_an_epoch_and_never_zero(tiny_cfg):
    cfg = tiny_cfg("scheduler_interval=epoch", config=OFFICIAL)
    lr0 = cfg.optimizer_kwargs.lr
    for total_iters in (12, 10):  # 3 epochs of 4 iterations; the last one cut short by max_iter
        rates = train(*optimisation(cfg, total_iters, batches_per_epoch=4), range(total_iters))
        assert rates == [release_rate(lr0, (it - 1) // 4, 3) for it in range(1, total_iters + 1)]
        # first and last iteration of each epoch
        assert rates[0] == rates[3] == lr0
        assert rates[4] == rates[7] == pytest.approx(lr0 * (2 / 3) ** 0.9, rel=1e-12)
        assert rates[8] == rates[-1] == pytest.approx(lr0 * (1 / 3) ** 0.9, rel=1e-12)  # never 0


def test_iteration_schedule_decays_every_iteration_to_zero(tiny_cfg):
    cfg = tiny_cfg("scheduler_interval=iteration", config=OFFICIAL)
    lr0 = cfg.optimizer_kwargs.lr
    model, optimizer, scheduler = optimisation(cfg, 12, batches_per_epoch=4)
    rates = train(model, optimizer, scheduler, range(12))
    assert rates == [lr0 * (1 - it / 12) ** 0.9 for it in range(12)]
    assert optimizer.param_groups[0]["lr"] == 0.0  # after the last iteration
    with pytest.raises(ValueError, match="batches_per_epoch"):
        build_scheduler(tiny_cfg("scheduler_interval=epoch"), optimizer, 12)


def test_official_config_steps_the_releases_schedule():
    from utils.config import load_config
    cfg = load_config(OFFICIAL, opts=["db_root=."])
    assert cfg.scheduler_interval == "epoch" and cfg.keep_zero_grads is True
    # PASCAL-Context's 4998 training images, one process: the release's 833 batches of 6 per epoch
    per_epoch = ResumableDistributedSampler(4998, cfg.trBatch, cfg.seed, rank=0, world_size=1).batches_per_epoch
    total = cfg.epochs * per_epoch
    assert (per_epoch, total) == (833, 83300)
    factor = optimisation(cfg, total, per_epoch)[2].lr_lambdas[0]  # the rate of iteration k is factor(k - 1)
    lr0 = cfg.optimizer_kwargs.lr
    rates = {k: lr0 * factor(k - 1) for k in (1, 833, 834, total)}
    assert rates[1] == rates[833] == 2e-5
    assert rates[834] == pytest.approx(2e-5 * 0.99 ** 0.9, rel=1e-12)  # 1.98199e-5
    assert rates[total] == pytest.approx(2e-5 * 0.01 ** 0.9, rel=1e-12)  # 3.16979e-7: 1.6% of lr0
    # per iteration, a run sums 0.991 of the release's learning rate (the figure)
    per_iteration = build_scheduler(load_config(OFFICIAL, opts=["db_root=.", "scheduler_interval=iteration"]),
                                    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr0), total)
    ratio = math.fsum(map(per_iteration.lr_lambdas[0], range(total))) / math.fsum(map(factor, range(total)))
    assert round(ratio, 3) == 0.991


def test_resume_in_the_middle_of_an_epoch_continues_its_rate(tiny_cfg, tmp_path):
    cfg = tiny_cfg("scheduler_interval=epoch", f"output_dir={tmp_path}", config=OFFICIAL)
    lr0 = cfg.optimizer_kwargs.lr
    torch.manual_seed(0)
    uninterrupted = train(*optimisation(cfg, 12, 4), range(12))

    torch.manual_seed(0)
    model, optimizer, scheduler = optimisation(cfg, 12, 4)
    first = train(model, optimizer, scheduler, range(6))  # stops at iteration 6 of 12: epoch 2 of 3
    Checkpointer(cfg, model, optimizer, scheduler).save_last(6)

    model, optimizer, scheduler = optimisation(cfg, 12, 4)  # a new process, as main.py resumes
    checkpointer = Checkpointer(cfg, model, optimizer, scheduler)
    assert checkpointer.resume(checkpointer.stored_run(), Lines()) == 6
    rest = train(model, optimizer, scheduler, range(6, 12))
    assert first + rest == uninterrupted
    # iterations 7 and 8 end epoch 2, 9 starts epoch 3
    assert rest[0] == rest[1] == release_rate(lr0, 1, 3) and rest[2] == rest[-1] == release_rate(lr0, 2, 3)


def test_the_trainer_logs_its_choices_and_each_iterations_rate(tiny_cfg, pascal_db, tmp_path):
    # 12 training images in batches of 2: 6 iterations per epoch; max_iter 8 makes 2 epochs
    cfg = tiny_cfg(f"db_root={pascal_db.db_root}", f"output_dir={tmp_path}", "max_iter=8",
                   "partial_labels_file=null", config=OFFICIAL)
    logger = Lines()
    trainer = Trainer(cfg, torch.device("cpu"), logger)
    try:
        assert trainer.batches.batches_per_epoch == 6
        trainer.model.train()
        for iteration in range(1, 8):
            trainer.train_step(iteration)
    finally:
        trainer.close()
    assert "adam, poly learning rate stepped per epoch; unlabelled tasks' parameters keep moving (zero " \
           "gradients kept, as torch 1.10 ran the release)" in logger.lines[1]
    lr0 = cfg.optimizer_kwargs.lr
    logged = [line.split(" lr ")[1].split()[0] for line in logger.lines if line.startswith("iter ")]
    assert logged == [f"{lr0:.2e}"] * 6 + [f"{release_rate(lr0, 1, 2):.2e}"]  # the rate each iteration used
