"""Errors that are the user's to fix: the CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (spec, paths, data). Printed without a traceback."""


class SpecError(UserError):
    """A spec file that cannot be used; the message names the file, the field and the value."""

    def __init__(self, path: object, field: str, problem: str):
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f"{self.path}: {field}: " if field else f"{self.path}: "
        super().__init__(where + problem)
