"""The memory nodes of one host, evaluated together (the solver's inner loop).

Where every node has a parametric latency curve, capacities and curves are evaluated for all
nodes in one vectorised pass; otherwise node by node through each profile's own objects. Both
give the same numbers (a test checks); the per-node path is the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tierenv.hardware.bandwidth import saturation_gbps
from tierenv.hardware.curves import (
    ParametricCurve,
    link_offset,
    load_of_fitted_mix,
    load_through_link,
)
from tierenv.hardware.profile import NodeProfile


class NodeSet:
    """The nodes of one host, in node-id order, evaluated together by the solver."""

    def __init__(self, profiles: Sequence[NodeProfile], vectorised: bool = True):
        if not profiles:
            raise ValueError("a host needs at least one memory node")
        self.profiles = tuple(profiles)
        self.vectorised = _VectorisedNodes(self.profiles) if vectorised else None
        if self.vectorised is not None and not self.vectorised.usable:
            self.vectorised = None
        self.idle_latency_ns = np.array([p.idle_latency_ns for p in self.profiles])
        # Capacity terms are monotone in the read fraction, so the worst case over all mixes
        # sits at r = 0 or r = 1.
        self.min_servable_gbps = np.array(
            [float(min(p.bandwidth(0.0), p.bandwidth(1.0))) for p in self.profiles]
        )

    def __len__(self) -> int:
        return len(self.profiles)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.profiles]

    def saturation_gbps(self, read_fraction: np.ndarray) -> np.ndarray:
        """Capacity of each node (last axis) at its read fraction."""
        if self.vectorised is not None:
            return self.vectorised.saturation_gbps(read_fraction)
        return np.stack(
            [p.bandwidth(read_fraction[..., i]) for i, p in enumerate(self.profiles)], axis=-1
        )

    def load_at(
        self, latency_ns: np.ndarray, read_fraction: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Served load ρ = B/Bsat at each node's latency, dρ/dL and ∫ρ dL from idle."""
        if self.vectorised is not None:
            return self.vectorised.load_at(latency_ns - self.idle_latency_ns, read_fraction)
        parts = [
            p.load_at(latency_ns[..., i] - p.idle_latency_ns, read_fraction[..., i])
            for i, p in enumerate(self.profiles)
        ]
        load, slope, integral = (np.stack(values, axis=-1) for values in zip(*parts, strict=True))
        return load, slope, integral


class _VectorisedNodes:
    """Parameters of all nodes as padded arrays (nodes x mixes) for one-pass evaluation."""

    def __init__(self, profiles: Sequence[NodeProfile]):
        curves = [p.latency for p in profiles if isinstance(p.latency, ParametricCurve)]
        self.usable = len(curves) == len(profiles)
        if not self.usable:
            return
        bandwidths = [p.bandwidth for p in profiles]
        self.media = np.array([b.media_gbps for b in bandwidths])
        self.penalty = np.array([b.write_penalty for b in bandwidths])
        self.read_link = np.array([b.read_link_gbps or np.inf for b in bandwidths])
        self.write_link = np.array([b.write_link_gbps or np.inf for b in bandwidths])
        self.count = np.array([c.read_fraction.size for c in curves])
        width = int(self.count.max())

        def padded(values: list[np.ndarray], fill_last: bool) -> np.ndarray:
            out = np.empty((len(values), width))
            for i, v in enumerate(values):
                out[i, : v.size] = v
                out[i, v.size :] = v[-1] if fill_last else np.inf
            return out

        self.mixes = padded([c.read_fraction for c in curves], fill_last=False)
        self.first_mix = self.mixes[:, 0]
        self.last_mix = np.array([c.read_fraction[-1] for c in curves])
        self.a = padded([c.a_ns for c in curves], fill_last=True)
        self.exponent = padded([c.exponent for c in curves], fill_last=True)
        self.headroom = padded([c.headroom for c in curves], fill_last=True)
        self.rows = np.arange(len(profiles))
        # Remote views: the socket link's terms (zeros for local nodes, which skip them).
        links = [p.link for p in profiles]
        self.linked = np.array([link is not None for link in links])
        self.write_idle = np.array([0.0 if k is None else k.write_idle_ns for k in links])
        self.rise_ns = np.array([0.0 if k is None else k.rise_ns for k in links])
        self.rise_gbps = np.array([1.0 if k is None else k.rise_gbps for k in links])

    def saturation_gbps(self, read_fraction: np.ndarray) -> np.ndarray:
        return saturation_gbps(
            read_fraction, self.media, self.penalty, self.read_link, self.write_link
        )

    def load_at(self, excess: np.ndarray, read_fraction: np.ndarray):
        neighbours = self._neighbours(read_fraction)
        direct = self._memory_load_at(np.maximum(excess, 0.0), neighbours)
        if not self.linked.any():
            return direct
        # A remote view's curve is its memory curve seen through the link (the numbers of
        # NodeProfile.load_at); local nodes keep their memory curve.
        r = np.clip(read_fraction, 0.0, 1.0)
        through = load_through_link(
            excess,
            link_offset(r, self.write_idle),
            self.rise_ns,
            self.rise_gbps,
            np.maximum(r, 1.0 - r) * self.saturation_gbps(r),
            lambda e: self._memory_load_at(e, neighbours),
        )
        return tuple(
            np.where(self.linked, via, own) for via, own in zip(through, direct, strict=True)
        )

    def _neighbours(self, read_fraction: np.ndarray):
        """Per node, the parameters of the measured mixes on either side of r and the weight
        of the upper one."""
        r = np.clip(read_fraction, self.first_mix, self.last_mix)
        below = np.sum(self.mixes <= r[..., None], axis=-1) - 1
        lower = np.clip(below, 0, np.maximum(self.count - 2, 0))
        upper = np.minimum(lower + 1, self.count - 1)
        low_mix, high_mix = self.mixes[self.rows, lower], self.mixes[self.rows, upper]
        span = np.where(upper > lower, high_mix - low_mix, 1.0)
        weight = np.where(upper > lower, (r - low_mix) / span, 0.0)

        def params(index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            rows = self.rows
            return self.a[rows, index], self.exponent[rows, index], self.headroom[rows, index]

        return params(lower), params(upper), weight

    @staticmethod
    def _memory_load_at(excess: np.ndarray, neighbours):
        """The memory curves at excess >= 0: the two neighbouring mixes blended."""
        low, high, weight = neighbours
        at_low = load_of_fitted_mix(excess, *low)
        at_high = load_of_fitted_mix(excess, *high)
        return tuple(
            (1 - weight) * lo + weight * hi for lo, hi in zip(at_low, at_high, strict=True)
        )
