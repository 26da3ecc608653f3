"""`python -m utils.launch TORCHRUN_ARGS`: torchrun whose failures are the children's
one-line errors (run.sh uses it), and `report_error`, how an entry point reports one."""
import json
import logging
import os
import sys
import time

LAUNCHED_ENV = "DIFFUSIONMTL_LAUNCHER"  # set for the children: the launcher prints their errors


def report_error(message):
    """How an entry point reports a user-facing error: one line on stderr, or, under the
    launcher, into torchrun's per-process error file, which the launcher prints once."""
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        with open(error_file, "w", encoding="utf-8") as handle:
            json.dump({"message": message, "timestamp": int(time.time())}, handle)
    if os.environ.get(LAUNCHED_ENV) != "1" or not error_file:
        print(f"error: {message}", file=sys.stderr)


def launch(argv=None):
    """`torchrun ARGS` with failures reduced to the first failing process's one-line error and
    its exit status (2 for config / data errors), instead of torchrun's ChildFailedError report.

    Returns the exit status.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from utils.threads import LAUNCHER_SET_OMP

    args = get_args_parser().parse_args(argv)
    os.environ[LAUNCHED_ENV] = "1"
    if "OMP_NUM_THREADS" not in os.environ:  # torchrun would force 1; main.py chooses instead
        os.environ["OMP_NUM_THREADS"], os.environ[LAUNCHER_SET_OMP] = "1", "1"
    # The processes' C++ warnings (c10 logging, not Python's `warnings`) from ERROR up only:
    # with partial labels DistributedDataParallel needs find_unused_parameters=True (the
    # layers of a task that no sample of a batch labels get no gradient), and c10d then warns
    # once that it "did not find any unused parameters" whenever a process's first batch
    # happens to label every task, a false positive that its own text concedes. Errors (NCCL
    # timeouts, ...) still show; TORCH_CPP_LOG_LEVEL=WARNING shows the rest.
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    logging.disable(logging.ERROR)  # torchrun's own warnings and failure reports
    try:
        run(args)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        message = failure.message if isinstance(failure.message, str) else failure.message.get("message", "")
        if failure.error_file_data.get("timestamp") is None or failure.exitcode < 0:
            # not one of our errors: a crash (its traceback is above) or a signal
            message = f"process of rank {rank} failed with exit status {failure.exitcode}" + (
                f" ({message})" if failure.exitcode < 0 else " (its traceback is above)")
        print(f"error: {message}", file=sys.stderr)
        return 128 - failure.exitcode if failure.exitcode < 0 else failure.exitcode
    except SignalException as err:  # Ctrl-C / kill: the processes saved and said so themselves
        return 128 + int(err.sigval)
    except Exception as err:  # rendezvous problems, e.g. a port in use on a multi-node run
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: torchrun could not start the processes: {type(err).__name__}: {first} "
              "(multi-node runs: set MASTER_ADDR and a free MASTER_PORT)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(launch())
