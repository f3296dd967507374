"""masim configs and a real damo record drive the simulated host, and DAMON follows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import DAMO_RECORD, data_path, needs_data
from tierenv.sim.host import SimulatedHost
from tierenv.workload.scenario import ScenarioError, parse_scenario
from tierenv.workload.trace import MasimTrace, RecordTrace

HOST = """
name = "traced"
duration_s = {duration}
page_size = "64 KiB"
[[nodes]]
profile = "spr-8460y-ddr5-socket"
capacity = "4 GiB"
[[nodes]]
profile = "generic-cxl-x8"
capacity = "4 GiB"
[[apps]]
name = "traced"
mlp = 20
think_ns = 50
trace = {{ kind = "{kind}", path = "{path}" }}
"""


def scenario(kind: str, path: Path, duration: int = 60):
    return parse_scenario(HOST.format(duration=duration, kind=kind, path=path), source="t.toml")


@needs_data("masim/stairs.cfg")
def test_masim_stairs_phases_are_followed_by_damon():
    trace = MasimTrace.load(data_path("masim/stairs.cfg"), 64 << 10)
    host = SimulatedHost(scenario("masim", data_path("masim/stairs.cfg")), weights=[3, 1])
    vmas = trace.vmas()
    hits = 0
    for step in range(60):
        result = host.step()
        if step % 5 != 4:  # judge at the end of each 5 s phase
            continue
        segment = trace.segment_at(step)
        hammered = int(np.argmax(trace.shares(segment)))  # page index of the busy region
        region = np.searchsorted(
            np.cumsum([size // (64 << 10) for _, size in vmas]), hammered, side="right"
        )
        start, size = vmas[region]
        regions = result.measurements.damon_regions["traced"]
        hot = regions["nr_accesses"] >= 10
        covered = np.clip(
            np.minimum(regions["end"], start + size) - np.maximum(regions["start"], start), 0, None
        )
        hits += (
            covered[hot].sum() >= 0.9 * size
            and (regions["end"] - regions["start"])[hot].sum() < 3 * size
        )
    # of 12 judged phases, the first two fall in the 10 s initial phase that touches every
    # region; in the others DAMON's hot regions are the hammered one
    assert hits >= 9


@needs_data(DAMO_RECORD)
def test_a_real_damon_record_replays_and_simulated_damon_finds_its_hot_regions():
    path = data_path(DAMO_RECORD)
    trace = RecordTrace.load(path, 64 << 10)
    host = SimulatedHost(scenario("damo-record", path, duration=50), weights=[3, 1])
    agreement = []
    for step in range(50):
        result = host.step()
        if step < 5:
            continue
        frequency = trace.frequency(trace.segment_at(step))
        recorded_hot = frequency >= 0.5
        if not recorded_hot.any():
            continue
        # the simulated DAMON's view, per page of the trace's mappings
        regions = result.measurements.damon_regions["traced"]
        vaddr = host.memory.app_page_vaddr(0)
        index = np.searchsorted(regions["start"], vaddr, side="right") - 1
        inside = (index >= 0) & (vaddr < regions["end"][np.clip(index, 0, None)])
        seen = np.where(inside, regions["nr_accesses"][np.clip(index, 0, None)], 0)
        simulated_hot = seen >= result.measurements.nr_accesses_max // 2
        both = np.count_nonzero(recorded_hot & simulated_hot)
        agreement.append(both / np.count_nonzero(recorded_hot))
    assert len(agreement) > 20
    assert np.mean(agreement) > 0.8  # the record's hot pages read hot to the simulated DAMON


@needs_data(DAMO_RECORD)
def test_trace_errors_name_the_key_and_the_file(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("a, 4096\n\nphase\n10\nb, 1, 64, 1\n")
    with pytest.raises(ScenarioError, match=r"apps\[0\].trace.path: .*bad.cfg:5"):
        scenario("masim", bad)
    truncated = tmp_path / "half.data"
    truncated.write_bytes(data_path(DAMO_RECORD).read_bytes()[:5000])
    with pytest.raises(ScenarioError, match=r"apps\[0\].trace.path: .*half.data"):
        scenario("damo-record", truncated)
    with pytest.raises(ScenarioError, match="unknown trace kind"):
        scenario("perf", bad)
