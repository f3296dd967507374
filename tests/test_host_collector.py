"""Host metric assembly pieces: perf queue latency, /proc/PID/maps, the two page-node queries
(move_pages(2) on this very process, read-only; numa_maps on a recorded real process), and
HostMetrics on a simulated kernel (missing sources are NaN, a vanished pid is dropped)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from tierenv.host.collector import HostMetrics
from tierenv.host.config import load_host_config
from tierenv.host.metrics import PerfBandwidth, PerfEvent, parse_maps_ranges, parse_numa_maps
from tierenv.host.page_nodes import MovePagesQuery, NumaMapsQuery
from tierenv.host.simulated_kernel import SimulatedKernel
from tierenv.host.sysfs import SysfsRoot

DATA = Path(__file__).parent / "data" / "host"


def test_perf_queue_occupancy_over_inserts_is_the_latency():
    events = {
        "rd": PerfEvent(0, "read"),
        "occ": PerfEvent(0, "occupancy", ns_per_count=0.5),  # a 2 GHz clock
        "ins": PerfEvent(0, "inserts"),
    }
    perf = PerfBandwidth(events, 1)
    lines = ["1.0,1000000,,rd,1000000000,100.00,,", "1.0,300000,,occ,1,100.00,,",
             "1.0,1000,,ins,1,100.00,,"]  # fmt: skip
    sample = next(iter(perf.intervals(lines)))
    assert sample.node_latency_ns[0] == pytest.approx(150.0)  # 300 cycles at 2 GHz
    assert sample.node_gbps[0] == pytest.approx(0.064)


def test_recorded_maps_parse_and_line_up_with_numa_maps():
    ranges = parse_maps_ranges((DATA / "proc/4243/maps").read_text(), "maps")
    assert ranges.shape == (189, 2) and np.all(ranges[:, 1] > ranges[:, 0])
    with pytest.raises(ValueError, match=r"maps:1: .*start-end"):
        parse_maps_ranges("zzzz rw-p 0 00:00 0\n", "maps")


def test_numa_maps_query_on_a_recorded_process():
    query = NumaMapsQuery(SysfsRoot(DATA / "proc"), page_size=4096)
    ranges = parse_maps_ranges((DATA / "proc/4243/maps").read_text())
    starts, ends = ranges[:, 0].astype(np.uint64), ranges[:, 1].astype(np.uint64)
    pages = query.region_pages(4243, starts, ends, 1)
    # Regions equal to the VMAs get exactly the VMAs' resident pages (one node here).
    numa = parse_numa_maps((DATA / "proc/4243/numa_maps").read_text())
    resident = sum(v.node_bytes.get(0, 0) for v in numa.vmas) / 4096
    assert pages.sum() == pytest.approx(resident)
    assert pages.sum() > 64 * 1024 * 1024 / 4096  # the 64 MiB buffer is in there


def test_move_pages_query_reads_this_process_pages():
    buffer = np.ones(8 * 1024 * 1024 // 8)  # 8 MiB, touched
    start = buffer.ctypes.data
    page = os.sysconf("SC_PAGE_SIZE")
    first = (start + page - 1) // page * page
    end = (start + buffer.nbytes) // page * page
    query = MovePagesQuery(samples_per_region=32)
    pages = query.region_pages(os.getpid(), np.array([first]), np.array([end]), 64)
    assert pages.sum() == pytest.approx((end - first) / page)
    # An unmapped range has no resident pages.
    empty = query.region_pages(os.getpid(), np.array([page]), np.array([8 * page]), 64)
    assert empty.sum() == 0


@pytest.fixture
def kernel(tmp_path) -> SimulatedKernel:
    kernel = SimulatedKernel(tmp_path / "host", "co-runner", seed=2)
    kernel.advance()
    return kernel


def test_host_metrics_without_perf_or_kdamond(kernel):
    config = load_host_config(kernel.config_path)
    config = dataclasses.replace(config, perf=None)
    metrics = HostMetrics(kernel.root, kernel.proc_root, config, None, clock=lambda: 5.0)
    assert set(metrics.unavailable_groups(use_damos=False)) == {
        "bandwidth", "read_fraction", "latency", "hotness", "access_share", "migrated",
        "damos_quota",
    }  # fmt: skip
    m = metrics.measure()
    assert np.isnan(m.node_bandwidth_gbps).all() and np.isnan(m.node_latency_ns).all()
    assert m.app_names == ("bw-a",)  # bw-b has not started: no /proc/4001
    assert any("4001" in w for w in metrics.warnings)
    truth = kernel.last.measurements
    np.testing.assert_array_equal(m.resident_pages, truth.resident_pages)
    np.testing.assert_allclose(m.node_free_bytes, truth.node_free_bytes)
    assert m.app_throughput_gbps[0] == truth.app_throughput_gbps[0]
    assert m.damon_regions == {} and m.pgmigrate_success == 0


def test_a_failing_throughput_source_is_nan_with_a_warning(kernel):
    metrics = HostMetrics(kernel.root, kernel.proc_root, load_host_config(kernel.config_path), None)
    (kernel.run_path / "throughput" / "bw-a").write_text("fast\n")
    m = metrics.measure()
    assert np.isnan(m.app_throughput_gbps[0])
    assert any("expected one number" in w for w in metrics.warnings)


def test_the_config_must_match_the_hosts_nodes(kernel, tmp_path):
    config = load_host_config(kernel.config_path)
    three = dataclasses.replace(config, profiles=config.profiles + config.profiles[:1])
    with pytest.raises(ValueError, match=r"lists 3 memory nodes but .* has nodes \[0, 1\]"):
        HostMetrics(kernel.root, kernel.proc_root, three, None)


def test_perf_follower_reads_a_spawned_perfs_stderr():
    """spawn = true runs perf and reads its CSV from stderr on a thread; a stand-in process
    printing perf's format exercises that path (no perf or uncore PMUs here)."""
    import sys
    import time

    from tierenv.host.collector import PerfFollower

    lines = ["1.000,100000000,,rd,1000000000,100.00,,", "2.000,200000000,,rd,1000000000,100.00,,"]
    script = (
        "import sys, time\n"
        + "".join(f"print({line!r}, file=sys.stderr, flush=True)\n" for line in lines)
        + "time.sleep(30)\n"
    )
    follower = PerfFollower(
        PerfBandwidth({"rd": PerfEvent(0, "read")}, 1), None, [sys.executable, "-c", script]
    )
    try:
        deadline = time.monotonic() + 20
        while (sample := follower.latest()) is None or sample.time_s < 2.0:
            assert time.monotonic() < deadline, "no sample from the spawned process"
            time.sleep(0.05)
        assert sample.node_gbps[0] == pytest.approx(200e6 * 64 / 1e9)
    finally:
        follower.close()
    assert follower._process is not None and follower._process.poll() is not None
