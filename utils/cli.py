"""What every command line of the project shares: help that shows the module docstring as
written and each argument's default once, and the checkpoint argument's one name."""
import argparse
import re
import sys


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written; '(default: X)' after every argument that has a default,
    unless its help already names it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or "default:" in text:
            return text
        return super()._get_help_string(action)


class _OldSpelling(argparse.Action):
    """An option's former name: still accepted, with a one-line notice on stderr."""

    def __init__(self, option_strings, dest, new_name, **kwargs):
        self.new_name = new_name
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is now {self.new_name} (the old spelling still works)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_checkpoint_argument(parser, help, old=()):
    """`--checkpoint CKPT`, the one name every command uses for a checkpoint file; `old`:
    the command's former spellings (hidden from --help, accepted with a notice)."""
    parser.add_argument("--checkpoint", default=None, metavar="CKPT", help=help)
    if old:
        parser.add_argument(*old, dest="checkpoint", action=_OldSpelling, new_name="--checkpoint",
                            help=argparse.SUPPRESS)


def require(parser, args, *names):
    """parser.error for each of `names` (dest names) that is None, as argparse's own `required`."""
    missing = [f"--{name}" for name in names if getattr(args, name) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")


def device_choice(value):
    """--device: auto, cpu, cuda or cuda:N (whether that GPU exists is checked when the command runs,
    by utils.distributed.resolve_device)."""
    if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise argparse.ArgumentTypeError(f"'{value}': use auto, cpu, cuda or cuda:N")
