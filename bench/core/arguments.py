"""Command lines: argparse whose usage errors are one line, and the exit status they end with."""

from __future__ import annotations

import argparse

from bench.core.errors import one_line

EXIT_USER_ERROR = 2
"""A usage or input error (argparse's own status for a usage error)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command (and exit status 2, as before)."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")
