"""Test-suite settings shared by every test module."""

from __future__ import annotations

# Hypothesis (6.131 and later) mixes numeric constants that it finds in the project's own
# modules into generated examples. Which modules are loaded depends on which tests run, so a
# derandomized property test would draw different examples whenever unrelated code changes
# or another test file is selected, and parsing every module costs minutes. The property
# tests here must draw the same examples on every run, so that source is switched off.
try:
    from hypothesis.internal.conjecture import providers as _providers

    _empty_constants = _providers._local_constants
    _providers._get_local_constants = lambda: _empty_constants
except (ImportError, AttributeError):  # older or reorganised Hypothesis: nothing to switch off
    pass


# Real-host backend safety: no test may reach the real /sys, whatever the caller's environment
# says (tierenv.host.sysfs refuses /sys and /proc unless TIERENV_ALLOW_REAL_SYSFS=1).
import pytest as _pytest


@_pytest.fixture(autouse=True)
def _no_real_sysfs(monkeypatch: _pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIERENV_ALLOW_REAL_SYSFS", raising=False)


@_pytest.fixture(autouse=True, scope="session")
def _sb3_logs_in_the_session_folder(tmp_path_factory: _pytest.TempPathFactory):
    """SB3 models that learn without a logger of their own create an empty ``SB3-<date>``
    folder in the system's temp folder each; they go into pytest's own temp folder instead,
    which pytest prunes (spawned worker processes inherit the variable)."""
    with _pytest.MonkeyPatch.context() as patch:
        patch.setenv("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3-logs")))
        yield
