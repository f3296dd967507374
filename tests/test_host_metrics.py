"""Host-mode metric parsers and sources on recorded real outputs (tests/data/host/README.md).

Expected values are computed independently of the parsers (regexes and plain arithmetic on the
recorded text), so a parser bug cannot agree with itself.
"""

from __future__ import annotations

import math
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tierenv.contracts.measurements import SchemeStats
from tierenv.host.metrics import (
    AppThroughput,
    AppThroughputError,
    DamosStats,
    MetricSource,
    NodeMemInfo,
    NumaMapsSource,
    PerfBandwidth,
    PerfEvent,
    PidGone,
    PidGoneError,
    VmStat,
    parse_damos_stats,
    parse_node_meminfo,
    parse_numa_maps,
    parse_perf_csv_line,
    parse_tried_regions,
    parse_vmstat,
    perf_command,
)
from tierenv.host.sysfs import SysfsRoot

DATA = Path(__file__).parent / "data" / "host"
SCHEME = "kernel/mm/damon/admin/kdamonds/0/contexts/0/schemes/0"
MiB = 1 << 20


# --- numa_maps --------------------------------------------------------------------------------


def test_numa_maps_recorded_sums_match_node_tokens() -> None:
    text = (DATA / "proc/self/numa_maps").read_text()
    maps = parse_numa_maps(text)
    assert len(maps.vmas) == len(text.splitlines()) == 37
    expected_pages = sum(int(n) for n in re.findall(r"\bN0=(\d+)", text))
    assert expected_pages == 428
    assert maps.node_bytes == {0: expected_pages * 4096}
    assert {v.policy for v in maps.vmas} == {"default"}
    assert sum(1 for v in maps.vmas if not v.node_pages) == 3
    stack = [v for v in maps.vmas if v.kind == "stack"]
    assert len(stack) == 1 and stack[0].counters["anon"] == 3
    assert maps.vmas[0].kind == "file=/usr/bin/cat"
    assert maps.vmas[0].address == 0x561EF1250000
    np.testing.assert_array_equal(maps.resident_pages(2), [428, 0])


def test_numa_maps_weighted_interleave_policy() -> None:
    maps = parse_numa_maps((DATA / "proc/4242/numa_maps").read_text())
    wi, bound, empty = maps.vmas
    assert wi.policy == "weighted interleave:0-1"
    assert wi.node_pages == {0: 54829, 1: 10965}
    assert wi.counters == {"anon": 65794, "dirty": 65794, "active": 0}
    assert round(54829 / (54829 + 10965), 3) == 0.833  # about 5:1
    assert bound.policy == "bind:1"
    assert empty.policy == "default" and empty.node_pages == {}
    assert maps.node_bytes == {0: (54829 + 12381) * 4096, 1: (10965 + 53155) * 4096}


def test_numa_maps_hugepage_size_and_multiword_policy() -> None:
    text = (
        "7f0000000000 prefer (many):0-1 huge anon=3 dirty=3 N0=2 N1=1 kernelpagesize_kB=2048\n"
        "7f1000000000 interleave=static:0-1 anon=2 N0=1 N1=1 kernelpagesize_kB=4\n"
    )
    huge, inter = parse_numa_maps(text).vmas
    assert huge.policy == "prefer (many):0-1" and huge.kind == "huge"
    assert huge.page_bytes == 2 * MiB
    assert huge.node_bytes == {0: 4 * MiB, 1: 2 * MiB}
    assert inter.policy == "interleave=static:0-1"
    maps = parse_numa_maps(text)
    np.testing.assert_array_equal(maps.resident_pages(2), [1025, 513])
    with pytest.raises(ValueError, match="node 1, but only 1 nodes"):
        maps.resident_pages(1)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("zz00 default N0=1 kernelpagesize_kB=4", "not hex"),
        ("7f00 default N0=x kernelpagesize_kB=4", "N0 'x' is not an integer"),
        ("7f00 default anon=two", "anon 'two' is not an integer"),
        ("7f00 default N0=1", "without kernelpagesize_kB"),
        ("7f00", "expected '<address> <policy>"),
        ("7f00 default bogus", "unexpected token 'bogus'"),
    ],
)
def test_numa_maps_malformed_names_source_and_line(line: str, why: str) -> None:
    good = "7e00 default anon=1 N0=1 kernelpagesize_kB=4\n"
    with pytest.raises(ValueError, match=rf"^/proc/7/numa_maps:2: .*{re.escape(why)}"):
        parse_numa_maps(good + line + "\n", "/proc/7/numa_maps")


# --- vmstat ---------------------------------------------------------------------------------


def test_vmstat_recorded() -> None:
    text = (DATA / "vmstat.t0").read_text()
    values = parse_vmstat(text)
    assert len(values) == len(text.splitlines())
    for name in ("pgmigrate_success", "pgmigrate_fail", "numa_hit", "numa_interleave"):
        assert values[name] == int(re.search(rf"^{name} (\d+)$", text, re.M)[1])
    assert any(k.startswith("pgpromote_") for k in values)
    assert any(k.startswith("pgdemote_") for k in values)


def test_vmstat_malformed() -> None:
    with pytest.raises(ValueError, match=r"^/proc/vmstat:2: .*expected '<name> <value>'"):
        parse_vmstat("numa_hit 1\nnuma_miss\n")
    with pytest.raises(ValueError, match=r"^/proc/vmstat:1: numa_hit '1.5' is not an integer"):
        parse_vmstat("numa_hit 1.5\n")


def test_vmstat_deltas_over_recorded_pair(tmp_path: Path) -> None:
    source = VmStat(SysfsRoot(tmp_path))
    shutil.copy(DATA / "vmstat.t0", tmp_path / "vmstat")
    first = source.read(10.0)
    assert first.deltas is None and first.interval_s is None
    assert set(first.counters) >= {"pgmigrate_success", "pgmigrate_fail", "numa_hit"}
    assert not any(k.startswith("nr_") for k in first.counters)
    with pytest.raises(ValueError, match="first vmstat read"):
        first.delta("pgmigrate_success")
    shutil.copy(DATA / "vmstat.t1", tmp_path / "vmstat")
    second = source.read(11.0)
    t0, t1 = (
        parse_vmstat((DATA / "vmstat.t0").read_text()),
        parse_vmstat((DATA / "vmstat.t1").read_text()),
    )
    assert second.interval_s == 1.0
    assert second.delta("numa_hit") == t1["numa_hit"] - t0["numa_hit"]
    assert second.delta("pgmigrate_success") == t1["pgmigrate_success"] - t0["pgmigrate_success"]
    assert second.delta("no_such_counter") == 0


def test_vmstat_synthetic_migration_delta(tmp_path: Path) -> None:
    source = VmStat(SysfsRoot(tmp_path))
    (tmp_path / "vmstat").write_text("pgmigrate_success 100\npgmigrate_fail 1\nnr_free_pages 9\n")
    source.read(0.0)
    (tmp_path / "vmstat").write_text("pgmigrate_success 350\npgmigrate_fail 4\nnr_free_pages 2\n")
    sample = source.read(2.5)
    assert sample.deltas == {"pgmigrate_success": 250, "pgmigrate_fail": 3}
    assert sample.interval_s == 2.5


# --- meminfo --------------------------------------------------------------------------------


def test_node_meminfo_recorded() -> None:
    path = DATA / "sys/devices/system/node/node0/meminfo"
    text = path.read_text()
    info = parse_node_meminfo(text, str(path), node=0)
    assert len(info) == len(text.splitlines())
    free_kb = int(re.search(r"MemFree:\s+(\d+) kB", text)[1])
    assert info["MemFree"] == free_kb * 1024
    assert info["MemUsed"] == info["MemTotal"] - info["MemFree"]
    assert info["Active(anon)"] == int(re.search(r"Active\(anon\):\s+(\d+)", text)[1]) * 1024
    assert info["HugePages_Total"] == 0  # a count, not kB


def test_node_meminfo_source(tmp_path: Path) -> None:
    source = NodeMemInfo(SysfsRoot(DATA / "sys"))
    assert source.nodes == [0]
    text = (DATA / "sys/devices/system/node/node0/meminfo").read_text()
    free = int(re.search(r"MemFree:\s+(\d+) kB", text)[1]) * 1024
    np.testing.assert_array_equal(source.free_bytes(0.0), [free])
    assert source.read(0.0)[0]["MemFree"] == free


def test_node_meminfo_malformed() -> None:
    with pytest.raises(ValueError, match=r"^node1/meminfo:2: .*expected 'Node <n>"):
        parse_node_meminfo("Node 1 MemFree: 1 kB\nNode 1 MemTotal 3 kB\n", "node1/meminfo", 1)
    with pytest.raises(ValueError, match=r"^m:1: line is for node 0, expected 1"):
        parse_node_meminfo("Node 0 MemFree: 1 kB\n", "m", 1)


# --- DAMOS ----------------------------------------------------------------------------------


def test_damos_stats_recorded() -> None:
    source = DamosStats(SysfsRoot(DATA / "sys"), kdamond=0)
    assert source.schemes() == [0]
    stats = source.read(0.0)
    assert stats == {0: SchemeStats()}  # the machine's copies are all 0 (never refreshed)
    raw = source.read_scheme(0)
    for name in raw:
        assert raw[name] == int((DATA / "sys" / SCHEME / "stats" / name).read_text())
    tried = source.tried_regions(0)
    assert tried.total_bytes == 0 and len(tried.start) == 0


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")


def test_damos_stats_and_tried_regions(tmp_path: Path) -> None:
    # Values read after a vaddr migrate_hot run with dests 3:1 in a two-node QEMU guest
    # (Debian 7.3 kernel): nr_tried=14 nr_applied=1 ...
    stats = {"nr_tried": "14", "sz_tried": "268435456", "nr_applied": "1",
             "sz_applied": "50712576", "qt_exceeds": "0", "nr_snapshots": "3"}  # fmt: skip
    files = {f"{SCHEME}/stats/{k}": v for k, v in stats.items()}
    regions = [(4096, 8192, 5, 2, 4096), (8192, 20480, 0, 11, 0)]
    for i, (start, end, acc, age, passed) in enumerate(regions):
        for name, value in zip(
            ("start", "end", "nr_accesses", "age", "sz_filter_passed"),
            (start, end, acc, age, passed),
            strict=True,
        ):
            files[f"{SCHEME}/tried_regions/{i}/{name}"] = str(value)
    files[f"{SCHEME}/tried_regions/total_bytes"] = "16384"
    _write_tree(tmp_path, files)
    source = DamosStats(SysfsRoot(tmp_path), kdamond=0)
    got = source.read(0.0)[0]
    assert got == SchemeStats(14, 268435456, 1, 50712576, 0, 0)
    assert source.read_scheme(0)["nr_snapshots"] == 3
    tried = source.tried_regions(0)
    np.testing.assert_array_equal(tried.start, [4096, 8192])
    np.testing.assert_array_equal(tried.end, [8192, 20480])
    np.testing.assert_array_equal(tried.nr_accesses, [5, 0])
    np.testing.assert_array_equal(tried.age, [2, 11])
    np.testing.assert_array_equal(tried.sz_filter_passed, [4096, 0])
    assert tried.total_bytes == 16384
    assert set(tried.as_region_arrays()) == {"start", "end", "nr_accesses", "age"}


def test_damos_malformed() -> None:
    good = {"nr_tried": "1", "sz_tried": "2", "nr_applied": "0", "sz_applied": "0"}
    with pytest.raises(ValueError, match=r"missing DAMOS stats files \['qt_exceeds'\]"):
        parse_damos_stats(good, "s")
    with pytest.raises(ValueError, match=r"^s/qt_exceeds:1: qt_exceeds 'x' is not an integer"):
        parse_damos_stats({**good, "qt_exceeds": "x\n"}, "s")
    region = {"start": "10", "end": "20", "nr_accesses": "1", "age": "0"}
    assert parse_tried_regions({0: region}).sz_filter_passed is None  # pre-6.14 kernel
    with pytest.raises(ValueError, match=r"^tr/0/age:1: age '-' is not an integer"):
        parse_tried_regions({0: {**region, "age": "-"}}, source="tr")
    with pytest.raises(ValueError, match=r"tr: region directories \[1\] are not 0..N-1"):
        parse_tried_regions({1: region}, source="tr")
    with pytest.raises(ValueError, match=r"tr/0: missing file end"):
        parse_tried_regions({0: {k: v for k, v in region.items() if k != "end"}}, source="tr")


# --- perf -----------------------------------------------------------------------------------

EVENTS = {
    "uncore_imc_0/cas_count_read/": PerfEvent(0, "read"),
    "uncore_imc_0/cas_count_write/": PerfEvent(0, "write"),
    "uncore_imc_1/cas_count_read/": PerfEvent(0, "read"),
    "uncore_imc_1/cas_count_write/": PerfEvent(0, "write"),
    "uncore_cxlcm_0/unc_cxlcm_rxc_pack_buf_inserts.mem_data/": PerfEvent(1, "read", 64),
    "uncore_cxldp_0/unc_cxldp_txc_agf_inserts.m2s_data/": PerfEvent(1, "write", 64),
}


def test_perf_csv_to_gbps() -> None:
    lines = (DATA / "perf/imc_cxl_interval.csv").read_text().splitlines()
    source = PerfBandwidth(EVENTS, n_nodes=2, source="imc_cxl_interval.csv")
    assert source.read(0.0) is None
    first, second = list(source.intervals(lines))
    assert first.time_s == 1.001 and first.interval_s == pytest.approx(1.001)
    ddr = (1907.35 + 476.84) * 2 * MiB
    cxl = (15625000 + 3906250) * 64
    np.testing.assert_allclose(first.node_gbps, [ddr / 1.001e9, cxl / 1.001e9])
    np.testing.assert_allclose(first.node_gbps, [5.0, 1.25], rtol=2e-3)
    np.testing.assert_allclose(first.node_read_fraction, [0.8, 0.8], rtol=1e-5)
    assert second.interval_s == pytest.approx(1.001)
    np.testing.assert_allclose(second.node_gbps, [8.0, 2.0], rtol=2e-3)
    np.testing.assert_allclose(second.node_read_fraction, [1.0, 1.0])
    assert source.read(3.0) is second


def test_perf_csv_line_fields_and_errors() -> None:
    count = parse_perf_csv_line("  1.5;12;;a/b,c=1/;1000;50.00;;\n", sep=";")
    assert (count.time_s, count.value, count.unit, count.event, count.run_pct) == (
        1.5,
        12.0,
        "",
        "a/b,c=1/",
        50.0,
    )
    per_socket = parse_perf_csv_line("2.0,S0,1,7,,ev,1,100.00,,", prefix_fields=2)
    assert per_socket.value == 7 and per_socket.event == "ev"
    assert parse_perf_csv_line("# started on Mon") is None
    assert parse_perf_csv_line("   ") is None
    assert math.isnan(parse_perf_csv_line("1.0,<not counted>,,ev,0,0.00,,").value)
    with pytest.raises(ValueError, match=r"^p:4: perf reports event 'ev' as not supported"):
        parse_perf_csv_line("1.0,<not supported>,,ev,0,0.00,,", "p", 4)
    with pytest.raises(ValueError, match=r"^p:2: interval time 'ev' is not a number"):
        parse_perf_csv_line("ev,1,,x", "p", 2)
    with pytest.raises(ValueError, match=r"^p:3: count 'abc' is not a number"):
        parse_perf_csv_line("1.0,abc,,ev", "p", 3)
    with pytest.raises(ValueError, match=r"^p:1: expected at least 4"):
        parse_perf_csv_line("1.0,5", "p", 1)


def test_perf_missing_event_and_unknown_unit() -> None:
    events = {"a": PerfEvent(0), "b": PerfEvent(1)}
    source = PerfBandwidth(events, 2, source="perf.csv")
    assert source.feed("1.0,10,,a,1,100,,") is None
    with pytest.raises(ValueError, match=r"^perf.csv:2: new interval at 2.0 s .* \['b'\]"):
        source.feed("2.0,10,,a,1,100,,")
    odd = PerfBandwidth({"a": PerfEvent(0)}, 1, source="perf.csv")
    with pytest.raises(
        ValueError, match=r"^perf.csv:1: event 'a' has unit 'Joules', which is not a byte unit"
    ):
        odd.feed("1.0,10,Joules,a,1,100,,")
    with pytest.raises(ValueError, match="maps to node 3"):
        PerfBandwidth({"a": PerfEvent(3)}, 2).feed("1.0,1,,a,1,100,,")
    nan = PerfBandwidth({"a": PerfEvent(0)}, 1).feed("1.0,<not counted>,,a,0,0,,")
    assert math.isnan(nan.node_gbps[0]) and math.isnan(nan.node_read_fraction[0])


def test_perf_command_is_only_built() -> None:
    argv = perf_command(EVENTS, interval_ms=500)
    assert argv[:6] == ["perf", "stat", "-a", "--no-merge", "-I", "500"]
    assert argv[-1].split(",") == list(EVENTS)


# --- numa_maps source and vanished PIDs -----------------------------------------------------


def test_numa_maps_source_and_pid_gone(tmp_path: Path) -> None:
    shutil.copytree(DATA / "proc", tmp_path, dirs_exist_ok=True)
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "numa_maps").write_text("")  # a zombie: no mm, empty numa_maps
    source = NumaMapsSource(SysfsRoot(tmp_path), [4242, "self", 999, 77])
    sample = source.read(5.0)
    assert set(sample.maps) == {4242, "self"}
    assert set(sample.gone) == {999, 77}
    assert "vanished" in sample.gone[999] and "empty" in sample.gone[77]
    assert sample.maps[4242].node_bytes[1] == (10965 + 53155) * 4096
    with pytest.raises(PidGone) as info:
        source.read_pid(999)
    assert info.value.pid == 999 and "process 999 is gone" in str(info.value)
    assert PidGone is PidGoneError
    shutil.rmtree(tmp_path / "4242")  # the process exits between two intervals
    assert set(source.read(6.0).gone) == {999, 77, 4242}


def test_sources_share_the_protocol(tmp_path: Path) -> None:
    sources: list[MetricSource[object]] = [
        VmStat(SysfsRoot(tmp_path)),
        NodeMemInfo(SysfsRoot(DATA / "sys")),
        DamosStats(SysfsRoot(DATA / "sys"), 0),
        NumaMapsSource(SysfsRoot(DATA / "proc"), ["self"]),
        PerfBandwidth(EVENTS, 2),
        AppThroughput(path=tmp_path / "x"),
    ]
    assert all(callable(s.read) for s in sources)


# --- application throughput -----------------------------------------------------------------


def test_app_throughput_file(tmp_path: Path) -> None:
    path = tmp_path / "tput"
    path.write_text(" 12.5\n")
    assert AppThroughput(path=path).read(0.0) == 12.5
    path.write_text("fast\n")
    with pytest.raises(AppThroughputError, match=rf"throughput file {path}: .*'fast'"):
        AppThroughput(path=path).read(0.0)
    for bad in ("nan", "-1", "inf"):
        path.write_text(bad)
        with pytest.raises(AppThroughputError, match="not a finite number >= 0"):
            AppThroughput(path=path).read(0.0)
    with pytest.raises(AppThroughputError, match="No such file"):
        AppThroughput(path=tmp_path / "missing").read(0.0)


def test_app_throughput_command() -> None:
    py = sys.executable
    assert AppThroughput(command=[py, "-c", "print(3.25)"]).read(0.0) == 3.25
    with pytest.raises(AppThroughputError, match=r"expected one number, got 'ops=5'"):
        AppThroughput(command=[py, "-c", "print('ops=5')"]).read(0.0)
    with pytest.raises(AppThroughputError, match=r"exited with 3: 'boom'"):
        AppThroughput(command=[py, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]).read(
            0.0
        )
    with pytest.raises(AppThroughputError, match=r"timed out after 0.2 s"):
        AppThroughput(command=[py, "-c", "import time; time.sleep(5)"], timeout_s=0.2).read(0)
    with pytest.raises(AppThroughputError, match="failed to start"):
        AppThroughput(command="/nonexistent/tput --json").read(0.0)
    with pytest.raises(ValueError, match="exactly one of"):
        AppThroughput()
    with pytest.raises(ValueError, match="exactly one of"):
        AppThroughput(command="x", path="y")
