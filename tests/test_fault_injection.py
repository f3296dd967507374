"""The fault-injection harness (``python -m tests.faults``) in small: three SIGKILLs of a real
daemon process at random moments across application churn on a ``tierenv fakehost`` tree,
each undone exactly by the next start, and the fake host never crashes."""

from __future__ import annotations

import pytest

from tests.faults import run_faults


@pytest.mark.slow
def test_three_random_kills_across_churn_are_all_restored() -> None:
    trials, crashes = run_faults(3, seed=1, log=lambda _line: None)
    assert crashes == 0
    assert len(trials) == 3
    # each kill landed after the daemon began writing
    assert all(t.journaled for t in trials), [(t.index, t.delay_s, t.note) for t in trials]
    failed = [(t.index, t.restart_code, t.differences, t.note) for t in trials if not t.restored]
    assert failed == []
