"""The benchmark workloads: one set of sizes that every system runs alike.

The system modules (`bench/systems/`) and the driver (`bench/run.py`) read their sizes
from here, so a workload means the same thing for every system. ``--quick`` picks the
small sizes, for smoke tests: their figures mean nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    """How big each workload is."""

    # L0: how long each client commits single-row INSERTs.
    l0_seconds: float
    # W1: runs x steps; W2: runs of one step.
    w1_runs: int
    w1_steps: int
    w2_runs: int
    # W3: message round trips measured one after the other.
    w3_sends: int
    # W4: stream items one run writes and one client reads.
    w4_items: int


FULL = Sizes(l0_seconds=5, w1_runs=200, w1_steps=10, w2_runs=2000, w3_sends=50, w4_items=1000)
QUICK = Sizes(l0_seconds=1, w1_runs=20, w1_steps=10, w2_runs=100, w3_sends=5, w4_items=50)

# A DBOS queue starts at most ``worker_concurrency`` workflows per poll of its queue, once
# a second by default, so its rate does not depend on how many runs wait. It runs this
# fraction of W1's and W2's runs (at least 20), which keeps `make bench` under 40 minutes
# and changes no rate: see docs/performance.md.
DBOS_QUEUE_FRACTION = {("W1", 1): 0.25, ("W1", 4): 1.0, ("W2", 4): 0.2}

# Each figure is the median of this many repetitions, with min and max.
REPEAT = 3

# The cases the driver runs: (workload, concurrency). Concurrency is the number of runs
# (or jobs, or commits) a system executes at once.
CASES: tuple[tuple[str, int], ...] = (
    ("L0", 1),
    ("L0", 4),
    ("W1", 1),
    ("W1", 4),
    ("W2", 4),
    ("W3", 4),
    ("W4", 4),
)

DESCRIPTIONS = {
    "L0": "PostgreSQL's commit limit: one single-row INSERT per transaction (psycopg)",
    "W1": "runs x trivial steps, one worker process",
    "W2": "runs of one trivial step (or jobs), four at once",
    "W3": "message wake-up: send() to the client holding the result",
    "W4": "stream items written by one run and read by a following client",
    "W5": "bench/w5.py",
    "W6": "bench/w6.py",
}


def sizes(quick: bool) -> Sizes:
    """Return the sizes for a full or a ``--quick`` run."""
    return QUICK if quick else FULL


def dbos_queue_runs(workload: str, concurrency: int, runs: int) -> int:
    """Return how many of ``runs`` the DBOS queue path executes (see DBOS_QUEUE_FRACTION)."""
    fraction = DBOS_QUEUE_FRACTION.get((workload, concurrency), 1.0)
    return min(runs, max(20, int(runs * fraction)))
