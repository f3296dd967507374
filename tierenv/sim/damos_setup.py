"""The DAMON/DAMOS setup a host runs to make already-allocated hot pages follow the weights.

The default follows damo's ``scripts/weighted_interleave.sh`` (damonitor/damo, the DAMON
maintainer's recipe): one vaddr kdamond per application, a ``migrate_hot`` scheme for regions
accessed in at least 5 % of samples, weighted ``dests`` equal to the
interleave weights (listed in node-id order, so a page's DAMOS destination is the node weighted
interleave would have given it), applied every second under a 200 MiB/s quota. The intervals
are the kernel's defaults (5 ms / 100 ms) with a 1 s ops update, as damo sets.

The quota is 200 MiB (209715200 bytes), not damo's "200MB": the kernel charges whole regions
aligned down to its minimum region, so a quota that is not a multiple of it is never reached
exactly, the charge window never records
where it stopped, and every window starts over at the lowest address (the simulator keeps
that behaviour; a quota of whole pages avoids it).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tierenv.damon.config import (
    AccessPattern,
    ContextConfig,
    Dest,
    MonitoringAttrs,
    Quotas,
    Scheme,
    Target,
)

if TYPE_CHECKING:
    from tierenv.workload.scenario import Scenario

MiB = 1 << 20


@dataclass(frozen=True)
class DamosSetup:
    enabled: bool = True
    attrs: MonitoringAttrs = field(default_factory=lambda: MonitoringAttrs(update_us=1_000_000))
    min_access_percent: float = 5.0
    apply_interval_us: int = 1_000_000
    quota_bytes: int = 200 * MiB
    quota_reset_interval_ms: int = 1000

    @classmethod
    def for_scenario(cls, scenario: Scenario) -> DamosSetup:
        """The setup a scenario's ``[damos]`` table asks for (the recipe's defaults
        otherwise), its quota rounded to whole pages per window as ``quota_per_window``."""
        spec = scenario.damos
        setup = cls(enabled=spec.enabled, min_access_percent=spec.min_access_percent)
        return dataclasses.replace(
            setup, quota_bytes=setup.quota_per_window(spec.quota_bytes_per_s, scenario.page_size)
        )

    @property
    def quota_bytes_per_s(self) -> float:
        """The quota as a rate: ``quota_bytes`` per reset window (0: unlimited)."""
        return self.quota_bytes * 1000.0 / self.quota_reset_interval_ms

    def quota_per_window(self, bytes_per_s: int, page_size: int) -> int:
        """The ``quotas/bytes`` for a rate of ``bytes_per_s`` (0: unlimited): whole pages per
        reset window, at least one page (the kernel charges whole minimum regions, so a quota
        that is not a multiple of one is never reached exactly; see the module docstring)."""
        if bytes_per_s < 0:
            raise ValueError(f"DAMOS quota must be >= 0 bytes/s, got {bytes_per_s}")
        per_window = int(bytes_per_s * self.quota_reset_interval_ms / 1000) // page_size
        per_window *= page_size
        return max(per_window, page_size) if bytes_per_s > 0 else 0

    def context(self, app_id: int, weights: list[int]) -> ContextConfig:
        """The kdamond context for one application with dests following ``weights``."""
        return self._context(app_id, tuple(int(w) for w in weights))

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - frozen, hashable, few instances
    def _context(self, app_id: int, weights: tuple[int, ...]) -> ContextConfig:
        # Cached: a controller revisits the same weights. A new configuration is the
        # setup's template with the dests and the target replaced (``replaced`` checks only
        # those: building a checked config from scratch costs about 0.1 ms).
        template = _template(
            self.attrs,
            self.min_access_percent,
            self.apply_interval_us,
            self.quota_bytes,
            self.quota_reset_interval_ms,
        )
        scheme = template.schemes[0].replaced(
            dests=tuple(_dest(node, weight) for node, weight in enumerate(weights))
        )
        return template.replaced(targets=(_target(app_id),), schemes=(scheme,))


@functools.lru_cache(maxsize=4096)
def _template(
    attrs: MonitoringAttrs,
    min_access_percent: float,
    apply_interval_us: int,
    quota_bytes: int,
    quota_reset_interval_ms: int,
) -> ContextConfig:
    """The context of a setup for app 0 with dests 1:1 (what ``_context`` varies)."""
    scheme = Scheme(
        action="migrate_hot",
        access_pattern=_pattern(attrs, min_access_percent),
        dests=(Dest(0, 1),),
        apply_interval_us=apply_interval_us,
        quotas=Quotas(bytes=quota_bytes, reset_interval_ms=quota_reset_interval_ms),
    )
    return ContextConfig(attrs=attrs, targets=(Target(pid=0),), schemes=(scheme,))


@functools.lru_cache(maxsize=64)
def _pattern(attrs: MonitoringAttrs, min_access_percent: float) -> AccessPattern:
    return AccessPattern.from_user(attrs, access_rate_percent=(min_access_percent, 100))


@functools.lru_cache(maxsize=4096)
def _dest(node: int, weight: int) -> Dest:
    return Dest(node, weight)


@functools.lru_cache(maxsize=1024)
def _target(app_id: int) -> Target:
    return Target(pid=app_id)
