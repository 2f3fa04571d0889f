"""The process table as the tests read it, independently of the code under test: Linux's /proc where
there is one, else `ps` (macOS)."""

from __future__ import annotations

import os
import subprocess


def _proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _ps(*options: str) -> list[list[str]]:
    out = subprocess.run(["ps", *options], capture_output=True, text=True).stdout  # exit 1: no such process
    return [line.split() for line in out.splitlines() if line.strip()]


def group_members(pgid: int) -> set[int]:
    """The processes of process group `pgid`, zombies included."""
    if not os.path.isdir("/proc"):
        return {int(pid) for pid, group in _ps("-A", "-o", "pid=,pgid=") if int(group) == pgid}
    members = set()
    for entry in os.listdir("/proc"):
        fields = _proc_stat(entry) if entry.isdigit() else None
        if fields and int(fields[2]) == pgid:
            members.add(int(entry))
    return members


def state(pid: int) -> str | None:
    """A process's state letter (R, S, D, T, Z...; "Z" an ended process not yet reaped); None if gone."""
    if not os.path.isdir("/proc"):
        rows = _ps("-o", "stat=", "-p", str(pid))
        return rows[0][0][0] if rows else None
    fields = _proc_stat(pid)
    return fields[0] if fields else None
