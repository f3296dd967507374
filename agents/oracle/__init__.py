"""Oracles: the per-interval upper bound and privileged controllers that know the scenario.

- ``load_timeline``: each interval's load, recorded from the simulator itself;
- ``upper_bound``: Σ_t OPT_t, a bound on every policy's reward throughput term;
- ``OracleGreedy`` ("oracle-greedy"): per interval, the best global weights for the next load;
- ``OracleDP`` ("oracle-dp"): the best schedule on the weight grid with migration cost;
- ``OraclePhase`` ("oracle-phase"): the same, changing weights only where the scenario does.
"""

from agents.oracle.bound import IntervalBound, UpperBound, interval_bound, upper_bound
from agents.oracle.dp import OracleDP, OraclePhase
from agents.oracle.greedy import OracleGreedy, best_shares
from agents.oracle.timeline import AppLoad, LoadTimeline, load_key, load_timeline

__all__ = [
    "AppLoad",
    "IntervalBound",
    "LoadTimeline",
    "OracleDP",
    "OracleGreedy",
    "OraclePhase",
    "UpperBound",
    "best_shares",
    "interval_bound",
    "load_key",
    "load_timeline",
    "upper_bound",
]
