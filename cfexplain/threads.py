"""How many CPU threads torch uses: :func:`set_threads` and the ``"auto"`` policy.

torch starts one thread per core. On a machine where other work runs, those threads wait for each
other at every parallel operation while the neighbours hold the cores, and a run gets several
times slower than with fewer threads (docs/benchmarks.md, "Threads"). ``"auto"`` therefore uses
the cores that are free now: the usable cores less those other work holds (the processes running
right now besides this one; the load average where the system does not say), at least one.
cfexplain's results do not depend on the thread count (the resizes that did are written to give
the same bits for any count), so the choice changes the speed only.

The command line applies the policy (``--threads``, default ``auto``); the library leaves torch's
setting alone unless :func:`set_threads` is called.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from .errors import InputError

__all__ = ["AUTO_THREADS", "available_cores", "auto_threads", "busy_cores", "set_threads"]

AUTO_THREADS = "auto"
"""The ``threads`` value that picks the free cores (:func:`auto_threads`)."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores(samples: int = 5) -> int:
    """Cores that other work holds now: on Linux, the median over ``samples`` readings 10 ms apart
    of the processes running (``procs_running`` in ``/proc/stat``) besides this one; elsewhere the
    one-minute load average, rounded (which lags, and counts this process's own recent work)."""
    counts = []
    for sample in range(samples):
        try:
            text = Path("/proc/stat").read_text()
        except OSError:
            break
        counts += [int(line.split()[1]) - 1 for line in text.splitlines() if line.startswith("procs_running")]
        if sample + 1 < samples:
            time.sleep(0.01)
    if counts:
        return max(0, int(statistics.median(counts)))
    try:
        return max(0, round(os.getloadavg()[0]))
    except (AttributeError, OSError):
        return 0


def auto_threads() -> int:
    """The usable cores less the busy ones (:func:`busy_cores`), at least 1: the cores that other
    work leaves free."""
    cores = available_cores()
    return max(1, min(cores, cores - busy_cores()))


def _resolved(threads: int | str) -> int:
    """The thread count ``threads`` asks for: an int ≥ 1, or ``"auto"`` (:func:`auto_threads`)."""
    if threads == AUTO_THREADS:
        return auto_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads must be an int ≥ 1 or {AUTO_THREADS!r}, got {threads!r}")
    return threads


def set_threads(threads: int | str = AUTO_THREADS) -> int:
    """Make torch use ``threads`` CPU threads (an int ≥ 1, or ``"auto"``: the cores that other
    work leaves free, :func:`auto_threads`) and return the number set.

    Results are the same for any thread count; only the speed changes. The count in use is
    recorded in every saved artefact's provenance (``threads``).

    Example:
        >>> import cfexplain
        >>> cfexplain.set_threads(1)
        1
    """
    import torch

    count = _resolved(threads)
    torch.set_num_threads(count)
    return count
