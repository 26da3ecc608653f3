"""DiffusionMTL training and evaluation.

One process:      python main.py --config_exp configs/demo.yml --run_mode train
Several (DDP):    torchrun --nproc_per_node=N main.py --config_exp CFG --run_mode train
Evaluation:       python main.py --config_exp CFG --run_mode infer --checkpoint CKPT
Config keys:      python main.py --config_keys

A training run writes everything under `cfg.run_dir` and, started again with the same
command, resumes from `last.pth` at the exact iteration it reached. Ctrl-C (or SIGTERM)
stops after the current iteration and saves `last.pth` first.
"""
import argparse
import os
import shutil
import sys

from utils.cli import HelpFormatter, add_checkpoint_argument, device_choice
from utils.errors import DiffusionMTLError, one_line
from utils.install import checked_imports
from utils.launch import report_error
from utils.logger import close_logger, hold_console, log_to_file, setup_logger


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config_exp", help="YAML experiment config (see configs/); required")
    parser.add_argument("--run_mode", choices=("train", "infer"), default="train",
                        help="train (resumes from <run folder>/last.pth when present) or infer "
                             "(evaluate --checkpoint on the validation split)")
    add_checkpoint_argument(parser, "checkpoint to evaluate (infer) or to initialise the weights from (train)",
                            old=("--trained_model",))
    parser.add_argument("--device", type=device_choice, default="auto", metavar="{auto,cpu,cuda,cuda:N}",
                        help="auto: this process's GPU when there is one, else the CPU; cuda: the GPU (an error "
                             "without one; several processes: one each); cuda:N: GPU N for a single process")
    parser.add_argument("--opts", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. max_iter=100 optimizer_kwargs.lr=1e-4")
    parser.add_argument("--config_keys", action="store_true",
                        help="print every config key with its default, accepted values and meaning, and exit")
    args = parser.parse_args(argv)
    if not args.config_keys and not args.config_exp:
        parser.error("the following arguments are required: --config_exp")
    return args


class Run:
    """The run folder's side of one command: its lock (training), log.txt, the console that
    shows setup lines only once the run is under way, and clean-up of a folder this command
    created when it fails before saving anything."""

    def __init__(self, cfg, run_mode, rank):
        from engine.run_lock import RunLock

        self.cfg, self.rank = cfg, rank
        self.created = not os.path.exists(cfg.run_dir)
        self.notices = []
        self.lock = None
        if run_mode == "train" and rank == 0:
            self.lock = RunLock(cfg.run_dir, notify=self.notices.append).acquire()
        self.logger = setup_logger(cfg.run_dir, rank)
        # Setup lines (threads, split, resume) wait for the run's header, which the engine logs
        # once every check has passed (utils.logger.run_header): a setup error stays one line.
        self.console = hold_console(self.logger)
        for notice in self.notices:
            self.logger.info(notice)

    def close(self, failed):
        if failed and self.console is not None:
            self.console.discard()  # the error line says it all; log.txt keeps the setup lines
        if self.lock is not None:
            self.lock.release()
        close_logger(self.logger)
        if failed and self.created and self.rank == 0 and \
                not os.path.exists(os.path.join(self.cfg.run_dir, "last.pth")):
            shutil.rmtree(self.cfg.run_dir, ignore_errors=True)  # nothing worth keeping was made


def main(argv=None):
    """Returns the exit status: 0 done, 2 config / data / checkpoint / install error, 130 interrupted.

    torch is imported only past the argument parsing, after the install check (so `--help`
    and `--config_keys` answer at once, and a torch / torchvision mismatch is one line).
    Called as a function (benchmarks.ablation, tests), it gives the caller's thread counts
    and random generator states back on return.
    """
    args = parse_args(argv)
    if args.config_keys:
        from utils.config import describe_keys

        print(describe_keys())
        return 0
    with checked_imports():
        from engine.checkpoint import capture_rng, restore_rng
        from utils.threads import restored_threads
        import engine.loop  # noqa: F401  (the model code: torchvision and timm load here)
    rng = capture_rng()
    with restored_threads():
        try:
            return _run(args)
        finally:
            restore_rng(rng)


def _run(args):
    """The command itself: config, threads, device, run folder, then training or evaluation."""
    from data.loaders import loader_workers
    from engine.validation import evaluate_checkpoint
    from engine.loop import Interrupted, train
    from engine.predict import Runtime
    from utils import distributed
    from utils.config import load_config
    from utils.threads import set_num_threads

    run, status = None, 2
    try:
        # Evaluation loads every weight from the checkpoint: no backbone initialisation.
        infer_opts = ["backbone_kwargs.pretrained=null"] if args.run_mode == "infer" else []
        cfg = load_config(args.config_exp, list(args.opts) + infer_opts)
        workers, workers_note = loader_workers(cfg.nworkers)
        threads, reason = set_num_threads(cfg.num_threads, workers)
        device = distributed.init_distributed(args.device)
        run = Run(cfg, args.run_mode, distributed.get_rank())
        run.logger.info(f"{threads} CPU thread(s) per process ({reason})")
        if workers_note:
            run.logger.info(workers_note)
        if cfg.amp and not Runtime.of(cfg, device).autocast_enabled:
            run.logger.info(f"amp: true has no effect on {device.type.upper()} (bf16 autocast runs on GPUs only): "
                            f"computing in float32")
        if args.run_mode == "train":
            train(cfg, device, run.logger, args.checkpoint, args.config_exp, args.opts)
        else:
            evaluate_checkpoint(cfg, args.checkpoint, device, run.logger)
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
