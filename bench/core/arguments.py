"""Command lines: argparse whose usage errors are one line, and the exit status they end with."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.core.errors import UserError, one_line
from bench.core.paths import writable_file

EXIT_USER_ERROR = 2
"""A usage or input error (argparse's own status for a usage error)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command (and exit status 2, as before)."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")

    def _print_message(self, message: str, file=None) -> None:
        """argparse's, but a help or version text that stdout cannot take raises its OSError, for `bench.cli`
        to say: argparse drops it, and where stdout is unbuffered (`python -u`, PYTHONUNBUFFERED) that was
        the only sign of it (`bench --help > /dev/full` ended with 0). On stderr it stays dropped."""
        if message and file is not None and file is sys.stdout:
            file.write(message)
        else:
            super()._print_message(message, file)

    def output_file(self, text: str | None, option: str, suffix: str) -> Path | None:
        """`text` as a file to write (`writable_file`), checked before any work, else this parser's one-line
        error; None where the option was not given."""
        try:
            return None if text is None else writable_file(text, option, suffix)
        except UserError as exc:
            self.error(str(exc))
