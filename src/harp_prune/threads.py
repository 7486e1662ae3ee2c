"""The CPU thread policy of the ``harp`` command: threads that sleep while they wait, as many as usable CPUs.

PyTorch's CPU kernels run on an OpenMP thread pool (GNU libgomp in the Linux wheels). While a thread waits
for the others at the end of a parallel region, libgomp lets it spin for a while by default; beside other
busy processes the spinning threads take the cores from the threads that have work, and an adversarial
training epoch becomes several times slower. ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep at once.
libgomp reads it only when it is loaded, which ``import torch`` does; the command imports torch only once it
has parsed its flags, so it sets the variable in its own environment first (``set_wait_policy``).

The number of threads is capped by the CPUs the process may use (its affinity and its cgroup's CPU quota),
which torch's default (the machine's physical cores) ignores in containers.

A user's setting always wins: ``OMP_WAIT_POLICY`` set in the environment is kept, ``OMP_NUM_THREADS`` leaves
the thread count alone, and ``HARP_THREAD_POLICY=off`` leaves both to OpenMP and torch. The policy is applied
by the command only (``harp``, ``python -m harp_prune``); a Python program using the library keeps its own.
See docs/performance.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

POLICY_SWITCH = "HARP_THREAD_POLICY"
WAIT_POLICY = "OMP_WAIT_POLICY"
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def policy_enabled(environ: Mapping[str, str]) -> bool:
    """Whether the command applies its policy (``HARP_THREAD_POLICY=off`` turns it off)."""
    return environ.get(POLICY_SWITCH, "on").strip().lower() not in ("off", "0", "false", "no")


def set_wait_policy(environ: MutableMapping[str, str]) -> None:
    """Add the passive wait policy to ``environ`` (``os.environ`` at the command's start, before torch is
    imported; its child processes inherit it), unless the policy is off or the user chose one."""
    if policy_enabled(environ):
        environ.setdefault(WAIT_POLICY, "PASSIVE")


def cgroup_cpu_limit(cpu_max: Path = CGROUP_CPU_MAX) -> int | None:
    """The CPUs a cgroup v2 quota allows (``cpu.max``: "<quota> <period>", rounded up), None without a quota."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, capped by its cgroup's quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    return min(cpus, limit) if limit is not None else cpus


def thread_count(environ: Mapping[str, str], current: int, usable: int) -> int | None:
    """The intra-op thread count to set, or None to keep ``current`` (the user set OMP_NUM_THREADS, the
    policy is off, or ``current`` already fits the usable CPUs)."""
    if not policy_enabled(environ) or "OMP_NUM_THREADS" in environ or current <= usable:
        return None
    return usable


def cap_torch_threads() -> None:
    """Before the ``harp`` command's work (this imports torch): cap torch's threads at the usable CPUs."""
    import torch

    threads = thread_count(os.environ, torch.get_num_threads(), usable_cpus())
    if threads is not None:
        torch.set_num_threads(threads)
