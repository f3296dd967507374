"""Recorded or scripted access patterns that change over time: masim configs, damo records.

A trace replaces an application's static distribution: it fixes the application's mappings
and, at every moment, each page's share of its accesses and its read share. Both kinds loop
when the scenario runs longer than they do.

- ``MasimTrace``: masim's phases one after another (``masim.MasimConfig.page_weights``); each
  region is its own mapping, as masim mmaps them.
- ``RecordTrace``: a real DAMON record (damo's format) replayed snapshot by snapshot: a page's
  share is proportional to the access frequency DAMON recorded for it (nr_accesses over the
  record's maximum), with a floor of 1e-6 of the mean so that idle pages stay mapped but cold.
  Its mappings are the address ranges the record covers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tierenv.workload.damo_record import DamonRecord, load_damo_record
from tierenv.workload.masim import MasimConfig, load_masim

IDLE_FLOOR = 1e-6


@dataclass(frozen=True)
class MasimTrace:
    config: MasimConfig
    page_size: int
    _phases: list = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def load(cls, path: str | Path, page_size: int) -> MasimTrace:
        config = load_masim(path)
        trace = cls(config, page_size)
        trace._phases.extend(config.page_weights(page_size))
        return trace

    @property
    def kind(self) -> str:
        return "masim"

    def vmas(self) -> list[tuple[int, int]]:
        return self.config.layout(self.page_size)

    @property
    def n_pages(self) -> int:
        return sum(size // self.page_size for _, size in self.vmas())

    @property
    def period_s(self) -> float:
        return sum(duration for duration, _, _ in self._phases)

    def segment_at(self, time_s: float) -> int:
        """Index of the phase in force at ``time_s`` (looping)."""
        moment = time_s % self.period_s if self.period_s > 0 else 0.0
        for index, (duration, _, _) in enumerate(self._phases):
            if moment < duration:
                return index
            moment -= duration
        return len(self._phases) - 1

    def shares(self, segment: int) -> np.ndarray:
        return self._phases[segment][1]

    def read_fraction(self, segment: int) -> float:
        return self._phases[segment][2]


@dataclass(frozen=True)
class RecordTrace:
    record: DamonRecord
    page_size: int
    _times: np.ndarray = field(default_factory=lambda: np.zeros(0), compare=False, repr=False)
    _frequency: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 0)), compare=False, repr=False
    )

    @classmethod
    def load(cls, path: str | Path, page_size: int) -> RecordTrace:
        record = load_damo_record(path)
        times, frequency = record.page_weights(page_size)
        return cls(record, page_size, np.asarray(times), np.asarray(frequency))

    @property
    def kind(self) -> str:
        return "damo-record"

    def vmas(self) -> list[tuple[int, int]]:
        return [(start, size) for start, size in self.record.layout(self.page_size)]

    @property
    def n_pages(self) -> int:
        return self._frequency.shape[1]

    @property
    def period_s(self) -> float:
        if len(self._times) < 2:
            return 1.0
        step = float(np.median(np.diff(self._times)))
        return float(self._times[-1] - self._times[0]) + step

    def segment_at(self, time_s: float) -> int:
        moment = time_s % self.period_s + self._times[0]
        return int(
            np.clip(np.searchsorted(self._times, moment, side="right") - 1, 0, len(self._times) - 1)
        )

    def frequency(self, segment: int) -> np.ndarray:
        """The recorded per-page access frequency (0..1) of a snapshot."""
        return self._frequency[segment].astype(np.float64)

    def shares(self, segment: int) -> np.ndarray:
        frequency = self.frequency(segment)
        floor = IDLE_FLOOR * max(float(frequency.mean()), 1e-12)
        weights = np.maximum(frequency, floor)
        return weights / weights.sum()

    def read_fraction(self, segment: int) -> float:
        return 1.0  # a DAMON record does not say; the application's own setting applies


Trace = MasimTrace | RecordTrace


def load_trace(kind: str, path: str | Path, page_size: int) -> Trace:
    if kind == "masim":
        return MasimTrace.load(path, page_size)
    if kind == "damo-record":
        return RecordTrace.load(path, page_size)
    raise ValueError(f"unknown trace kind {kind!r}; expected masim or damo-record")
