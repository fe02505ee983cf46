"""The ``conformance`` command's entry point: what must be settled before the CLI imports NumPy.

The command's own process never multiplies a matrix (the oracle and the frameworks run in its
workers), yet NumPy's OpenBLAS starts a thread per core at import, and those threads spin: a
tenth of a core-second of this process's 1.5 in the reference run, and as much again in the
processes it forks. So the command's process starts with the thread limits its workers get
(:data:`THREAD_LIMITS`, where the user set none), and everything it starts inherits the same.
"""

from __future__ import annotations

import os

#: One compute thread per worker: -n N workers already use N cores, and oversubscribed thread
#: pools (torch's OpenMP) slow a run several-fold. Set in the environment a worker starts with,
#: since a spawned process imports NumPy (and so starts OpenBLAS's threads) before any code of ours.
THREAD_LIMITS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def limit_threads() -> None:
    """THREAD_LIMITS in this process's environment, where the user set none (before NumPy loads)."""
    for variable, value in THREAD_LIMITS.items():
        os.environ.setdefault(variable, value)


def main() -> int:
    limit_threads()
    from conformance.cli import main as cli_main

    return cli_main()
