"""Host side of the realkernel tests: the guest directory is never collected here, and the VM
tests run only when selected (``-m realkernel``), so the default suite does not boot a VM."""

from __future__ import annotations

import os

import pytest

# Guest-side tests run only inside the VM, from their own pytest.ini (see guest/).
collect_ignore = ["guest"]

SELECT_ENV = "TIERENV_REALKERNEL"


def selected(config: pytest.Config) -> bool:
    """Whether the run asked for the VM tests: ``-m`` naming realkernel, or TIERENV_REALKERNEL=1."""
    return "realkernel" in (config.getoption("markexpr") or "") or os.environ.get(SELECT_ENV) == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if selected(config):
        return
    from tests.realkernel import vm

    reason = vm.check() or "boots a QEMU VM for about 3 minutes"
    skip = pytest.mark.skip(reason=f"{reason}; run with: python -m pytest -m realkernel")
    for item in items:
        if item.get_closest_marker("realkernel"):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.realkernel.test_realkernel import SUMMARY

    for line in SUMMARY:
        terminalreporter.write_line(line)
