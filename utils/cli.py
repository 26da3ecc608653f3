"""What every command line of the project shares: help that shows the module docstring as
written and each argument's default once."""
import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written; '(default: X)' after every argument that has a default,
    unless its help already names it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or "default:" in text:
            return text
        return super()._get_help_string(action)
