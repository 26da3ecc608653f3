"""DiffusionMTL training and evaluation.

One process:      python main.py --config_exp configs/demo.yml --run_mode train
Several (DDP):    torchrun --nproc_per_node=N main.py --config_exp CFG --run_mode train
Evaluation:       python main.py --config_exp CFG --run_mode infer --trained_model CKPT
Config keys:      python main.py --config_keys

A training run writes everything under `cfg.run_dir` and, started again with the same
command, resumes from `last.pth` at the exact iteration it reached. Ctrl-C (or SIGTERM)
stops after the current iteration and saves `last.pth` first.
"""
import argparse
import os
import shutil
import sys

from data.loaders import loader_workers
from engine.evaluation import evaluate_checkpoint
from engine.loop import Interrupted, train
from engine.run_lock import RunLock
from utils import distributed
from utils.cli import HelpFormatter
from utils.config import describe_keys, load_config
from utils.errors import DiffusionMTLError, one_line
from utils.launch import report_error
from engine.checkpoint import capture_rng, restore_rng
from utils.logger import close_logger, log_to_file, setup_logger
from utils.threads import restored_threads, set_num_threads


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config_exp", help="YAML experiment config (see configs/); required")
    parser.add_argument("--run_mode", choices=("train", "infer"), default="train",
                        help="train (resumes from <run folder>/last.pth when present) or infer "
                             "(evaluate --trained_model on the validation split)")
    parser.add_argument("--trained_model", default=None,
                        help="checkpoint to evaluate (infer) or to initialise the weights from (train)")
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto",
                        help="auto: this process's GPU when there is one, else the CPU")
    parser.add_argument("--opts", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. max_iter=100 optimizer_kwargs.lr=1e-4")
    parser.add_argument("--config_keys", action="store_true",
                        help="print every config key with its default, accepted values and meaning, and exit")
    args = parser.parse_args(argv)
    if not args.config_keys and not args.config_exp:
        parser.error("the following arguments are required: --config_exp")
    return args


class Run:
    """The run folder's side of one command: its lock (training), log.txt, and clean-up of
    a folder this command created when it fails before saving anything."""

    def __init__(self, cfg, run_mode):
        self.cfg = cfg
        self.created = not os.path.exists(cfg.run_dir)
        self.notices = []
        self.lock = None
        if run_mode == "train" and distributed.is_main_process():
            self.lock = RunLock(cfg.run_dir, notify=self.notices.append).acquire()
        self.logger = setup_logger(cfg.run_dir, distributed.get_rank())
        for notice in self.notices:
            self.logger.info(notice)

    def close(self, failed):
        if self.lock is not None:
            self.lock.release()
        close_logger(self.logger)
        if failed and self.created and distributed.is_main_process() and \
                not os.path.exists(os.path.join(self.cfg.run_dir, "last.pth")):
            shutil.rmtree(self.cfg.run_dir, ignore_errors=True)  # nothing worth keeping was made


def main(argv=None):
    """Returns the exit status: 0 done, 2 config / data / checkpoint error, 130 interrupted.

    Called as a function (benchmarks.ablation, tests), it gives the caller's thread counts
    and random generator states back on return.
    """
    args = parse_args(argv)
    if args.config_keys:
        print(describe_keys())
        return 0
    rng = capture_rng()
    with restored_threads():
        try:
            return _run(args)
        finally:
            restore_rng(rng)


def _run(args):
    """The command itself: config, threads, device, run folder, then training or evaluation."""
    run, status = None, 2
    try:
        # Evaluation loads every weight from the checkpoint: no backbone initialisation.
        infer_opts = ["backbone_kwargs.pretrained=null"] if args.run_mode == "infer" else []
        cfg = load_config(args.config_exp, list(args.opts) + infer_opts)
        workers, workers_note = loader_workers(cfg.nworkers)
        threads, reason = set_num_threads(cfg.num_threads, workers)
        device = distributed.init_distributed(args.device)
        run = Run(cfg, args.run_mode)
        run.logger.info(f"{threads} CPU thread(s) per process ({reason})")
        if workers_note:
            run.logger.info(workers_note)
        if args.run_mode == "train":
            train(cfg, device, run.logger, args)
        else:
            evaluate_checkpoint(cfg, args.trained_model, device, run.logger)
        status = 0
    except DiffusionMTLError as err:
        message = one_line(err)
        report_error(message)
        if run is not None:
            log_to_file(run.logger, f"error: {message}")
    except Interrupted:
        status = 130
    except KeyboardInterrupt:
        status = 130
        message = "interrupted twice: stopped without saving (last.pth keeps its last save)"
        print(message, file=sys.stderr)
        if run is not None:
            log_to_file(run.logger, message)
    finally:
        if run is not None:
            run.close(failed=status == 2)
        distributed.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
