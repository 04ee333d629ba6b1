"""When this process started, so that a run's ``--seconds`` budget counts the interpreter's start and
the imports too (on a lent GPU every second of the call is paid for)."""

from __future__ import annotations

import math
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


def next_utc(until: str, now: float | None = None) -> float:
    """Unix time of the next ``HH:MM`` on the UTC clock after ``now`` (default: this moment).

    The one reader of every training command's ``--until``: a stop time earlier in the day than now
    means tomorrow's (a run started at 23:50 with ``--until 01:40`` runs 110 minutes, not none).
    """
    import datetime as dt

    from ..errors import InputError

    try:
        hours, minutes = (int(part) for part in until.split(":"))
        moment = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.timezone.utc)
        target = moment.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    except ValueError:
        raise InputError(f"--until {until!r} is not a UTC time; give it as HH:MM, e.g. 15:15.") from None
    if target <= moment:
        target += dt.timedelta(days=1)
    return target.timestamp()


def clock_cosine(fraction: float, warmup: float = 0.0, warmup_from: float = 0.0, floor: float = 0.0) -> float:
    """The learning-rate factor (of the peak) at ``fraction`` of a run's wall-clock time.

    Linear warm-up from ``warmup_from`` to 1 over the first ``warmup`` of the time, then a cosine down
    to ``floor``. Every time-budgeted run uses this one schedule: torch's schedulers count steps, and
    the steps a shared CPU or a lent GPU gives per second are not known in advance.
    """
    fraction = min(max(fraction, 0.0), 1.0)
    if fraction < warmup:
        return warmup_from + (1.0 - warmup_from) * fraction / warmup
    progress = (fraction - warmup) / (1.0 - warmup) if warmup < 1.0 else 1.0
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
