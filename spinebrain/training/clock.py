"""When this process started, so that a run's ``--seconds`` budget counts the interpreter's start and
the imports too (on a lent GPU every second of the call is paid for)."""

from __future__ import annotations

import os
import time


def process_start_time() -> float:
    """``time.time()`` at this process's start (Linux ``/proc``); elsewhere, or if the answer looks wrong
    (more than ten minutes ago or in the future), the time of this call."""
    now = time.time()
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            ticks = int(handle.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/stat", encoding="ascii") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime"))
        started = boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return now
    return started if now - 600 < started <= now + 1 else now
