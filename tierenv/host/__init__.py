"""Real-host backend: a safe sysfs layer for weighted interleave and our own DAMON kdamond.

Nothing here touches the real ``/sys`` unless ``TIERENV_ALLOW_REAL_SYSFS=1`` is set; tests run
against :class:`tierenv.host.fake_kernel.FakeKernel`.
"""

from tierenv.host.damon import Features, Kdamond, KdamondError, probe
from tierenv.host.interleave import InterleaveState, InterleaveWriteError, WeightedInterleave
from tierenv.host.sysfs import ALLOW_ENV, RealSysfsRefusedError, SysfsError, SysfsRoot

__all__ = [
    "ALLOW_ENV",
    "Features",
    "InterleaveState",
    "InterleaveWriteError",
    "Kdamond",
    "KdamondError",
    "RealSysfsRefusedError",
    "SysfsError",
    "SysfsRoot",
    "WeightedInterleave",
    "probe",
]
