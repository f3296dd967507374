"""Readers of measured bandwidth–latency curves, checked against the shipped reference data."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.shared_data import MESS_BWLAT, MLC, data_path, needs_data, needs_mess
from tests.shared_data import MESS_CSV as MESS
from tierenv.hardware.measurements import (
    MLC_TRAFFIC,
    MeasuredCurve,
    MeasurementError,
    read_bwlat_curve,
    read_measurements,
    read_mess_curves,
    read_mlc_loaded_latency,
)

needs_mlc = needs_data(MLC)
MLC_DIR = data_path(MLC)
MLC_LOGS = sorted(MLC_DIR.glob("*_log_*"))
CXL_W0 = MLC_DIR / "cxl_log_d0_c16_w0_r0"
MESS_CSV = data_path(MESS)
BWLAT_DIR = data_path(MESS_BWLAT)

# Delays MLC v3.10 uses by default, lightest load first.
DELAYS_IDLE_FIRST = [
    20000,
    9000,
    5000,
    3500,
    2500,
    1700,
    1300,
    1000,
    700,
    500,
    400,
    300,
    200,
    100,
    50,
    15,
    8,
    2,
    0,
]

# The loaded-latency table of the ByteDance CXL read-only log (Tang et al., EuroSys'24:
# data/mlc/bytedance-eurosys24/cxl_log_d0_c16_w0_r0), rows in file order (delay ascending):
# (delay, ns, MB/s).
CXL_W0_ROWS = [
    (0, 802.62, 48003.1),
    (2, 809.91, 48038.6),
    (8, 759.41, 48024.9),
    (15, 566.66, 47890.0),
    (50, 507.81, 47237.2),
    (100, 511.95, 46998.9),
    (200, 456.90, 44955.0),
    (300, 341.58, 36205.4),
    (400, 317.24, 28634.5),
    (500, 306.26, 23400.9),
    (700, 295.92, 17211.5),
    (1000, 287.82, 12336.2),
    (1300, 282.58, 9636.5),
    (1700, 279.62, 7472.3),
    (2500, 273.68, 5203.3),
    (3500, 269.00, 3806.5),
    (5000, 266.59, 2746.2),
    (9000, 256.92, 1646.4),
    (20000, 250.41, 877.7),
]

MLC_PREAMBLE = """Intel(R) Memory Latency Checker - v3.10
Command line parameters: --loaded_latency -j4 -k1-16 {extra}

Using buffer size of 100.000MiB/thread for reads and an additional 100.000MiB/thread for writes

Measuring Loaded Latencies for the system
Using all the threads from each core if Hyper-threading is enabled
Inject\tLatency\tBandwidth
Delay\t(ns)\tMB/sec
==========================
"""

# A default MLC v3.11b run of a two-socket Intel host as MLC prints it. The loaded-latency rows at
# delays 0, 300, 400 and 20000 are from a public log; the others are filled in.
DEFAULT_RUN_ROWS = [
    (0, 329.26, 159154.0),
    (2, 330.11, 159201.7),
    (8, 318.40, 158990.2),
    (15, 290.75, 158510.6),
    (50, 231.02, 156870.3),
    (100, 178.55, 152303.9),
    (200, 141.36, 145612.4),
    (300, 127.88, 132998.9),
    (400, 110.64, 102244.7),
    (500, 100.21, 82570.8),
    (700, 93.87, 59602.3),
    (1000, 90.12, 42118.5),
    (1300, 88.41, 32750.4),
    (1700, 87.05, 25322.9),
    (2500, 85.66, 17421.0),
    (3500, 84.70, 12601.8),
    (5000, 83.91, 8941.7),
    (9000, 83.02, 5126.4),
    (20000, 82.30, 2932.1),
]
DEFAULT_RUN = """Intel(R) Memory Latency Checker - v3.11b
Measuring idle latencies for sequential access (in ns)...
\t\tNuma node
Numa node\t     0\t     1
       0\t  82.1\t 141.0
       1\t 141.5\t  81.5

Measuring Peak Injection Memory Bandwidths for the system
Bandwidths are in MB/sec (1 MB/sec = 1,000,000 Bytes/sec)
Using all the threads from each core if Hyper-threading is enabled
Using traffic with the following read-write ratios
ALL Reads        :\t158844.5
3:1 Reads-Writes :\t150658.6
2:1 Reads-Writes :\t149341.2
1:1 Reads-Writes :\t143355.4
Stream-triad like:\t128158.7

Measuring Memory Bandwidths between nodes within system
Bandwidths are in MB/sec (1 MB/sec = 1,000,000 Bytes/sec)
Using all the threads from each core if Hyper-threading is enabled
Using Read-only traffic type
\t\tNuma node
Numa node\t     0\t     1
       0\t79670.3\t34393.4
       1\t34385.7\t79678.3

Measuring Loaded Latencies for the system
Using all the threads from each core if Hyper-threading is enabled
Using Read-only traffic type
Inject\tLatency\tBandwidth
Delay\t(ns)\tMB/sec
==========================
{rows}
Measuring cache-to-cache transfer latency (in ns)...
Local Socket L2->L2 HIT  latency\t49.5
Local Socket L2->L2 HITM latency\t49.5
"""


def tab_rows(rows: list[tuple[int, float, float]]) -> str:
    """Rows as MLC v3.10 prints them: zero-padded delay, TAB-separated, right-aligned MB/s."""
    return "".join(f" {d:05d}\t{lat:.2f}\t{bw:9.1f}\n" for d, lat, bw in rows)


def space_rows(rows: list[tuple[int, float, float]]) -> str:
    """The same rows space-padded, as some MLC versions print them."""
    return "".join(f" {d:05d}  {lat:8.2f}  {bw:10.1f}\n" for d, lat, bw in rows)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def mlc_log(tmp_path: Path, rows: str, extra: str = "", name: str = "log") -> Path:
    return write(tmp_path, name, MLC_PREAMBLE.format(extra=extra) + rows)


# --- MLC logs shipped with the reference data -------------------------------------------------


# The two log families (data/README.md): each socket-local device (d0) at four mixes,
# and the same memory seen from the other socket's cores (d3 = the CXL device, d7 = the DDR5
# domain) at -W0 and -W2 only.
LOCAL_MLC_LOGS = [
    f"{device}_{code}_r0"
    for device in ("cxl_log_d0_c16", "ddr5_log_d0_c8")
    for code in ("w0", "w2", "w5", "w6")
]
REMOTE_MLC_LOGS = [
    f"{device}_{code}_r0"
    for device in ("cxl_log_d3_c16", "ddr5_log_d7_c16")
    for code in ("w0", "w2")
]
# Lightest-load delay by which each family's bandwidth has risen strictly from idle to its peak:
# the open-loop part of a local log runs to delay 500; across the socket link the -W2 runs
# saturate sooner (the CXL one peaks at delay 1000).
RISES_TO_PEAK_BY_DELAY = {"local": 500, "remote": 1000}


def mlc_family(path: Path) -> str:
    return "remote" if path.name in REMOTE_MLC_LOGS else "local"


@needs_mlc
def test_all_mlc_logs_are_present() -> None:
    assert [p.name for p in MLC_LOGS] == sorted(LOCAL_MLC_LOGS + REMOTE_MLC_LOGS)


@needs_mlc
@pytest.mark.parametrize("path", MLC_LOGS, ids=lambda p: p.name)
def test_mlc_log_has_19_rows_idle_first(path: Path) -> None:
    curve = read_mlc_loaded_latency(path)
    # Both families ran MLC's 19 default delays.
    assert curve.bandwidth_gbps.shape == curve.latency_ns.shape == (len(DELAYS_IDLE_FIRST),)
    assert curve.bandwidth_gbps.dtype == np.float64
    # Idle first: the 20000-cycle row carries the least traffic and the lowest latency, and
    # bandwidth rises strictly from it up to the peak, reached at the family's delay or later.
    assert curve.bandwidth_gbps[0] == curve.bandwidth_gbps.min()
    assert curve.idle_latency_ns() == curve.latency_ns.min()
    peak = int(np.argmax(curve.bandwidth_gbps))
    assert np.all(np.diff(curve.bandwidth_gbps[: peak + 1]) > 0)
    assert DELAYS_IDLE_FIRST[peak] <= RISES_TO_PEAK_BY_DELAY[mlc_family(path)]
    assert curve.source == str(path)


@needs_mlc
@pytest.mark.parametrize("name", REMOTE_MLC_LOGS)
def test_remote_mlc_log_is_slower_than_the_local_one(name: str) -> None:
    """The same memory and mix seen across the socket link: a higher idle latency."""
    remote = read_mlc_loaded_latency(MLC_DIR / name)
    local_name = re.sub(r"_d[37]_c16_", "_d0_c16_" if name.startswith("cxl") else "_d0_c8_", name)
    local = read_mlc_loaded_latency(MLC_DIR / local_name)
    assert remote.read_fraction == local.read_fraction
    assert remote.idle_latency_ns() > 1.2 * local.idle_latency_ns()


@needs_mlc
@pytest.mark.parametrize(
    ("code", "expected"), [("w0", 1.0), ("w2", 0.75), ("w5", 2 / 3), ("w6", 0.0)]
)
@pytest.mark.parametrize("device", ["cxl_log_d0_c16", "ddr5_log_d0_c8"])
def test_mlc_read_fraction_follows_w_code(device: str, code: str, expected: float) -> None:
    curve = read_mlc_loaded_latency(MLC_DIR / f"{device}_{code}_r0")
    assert curve.read_fraction == pytest.approx(expected, abs=1e-12)
    assert curve.label.startswith(f"MLC -W{code[1:]} (")


@needs_mlc
def test_mlc_cxl_reads_exact_values() -> None:
    curve = read_mlc_loaded_latency(CXL_W0)
    expected = sorted(CXL_W0_ROWS, key=lambda row: row[0], reverse=True)
    np.testing.assert_allclose(curve.latency_ns, [row[1] for row in expected], rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        curve.bandwidth_gbps, [row[2] / 1000 for row in expected], rtol=0, atol=1e-12
    )
    assert curve.latency_ns[0] == pytest.approx(250.41)  # delay 20000
    assert curve.bandwidth_gbps[0] == pytest.approx(0.8777)
    assert curve.latency_ns[-1] == pytest.approx(802.62)  # delay 0
    assert curve.bandwidth_gbps[-1] == pytest.approx(48.0031)
    assert curve.peak_gbps() == pytest.approx(48.0386)  # delay 2, not delay 0
    assert curve.label == "MLC -W0 (all reads)"


@needs_mlc
def test_mlc_ddr5_write_mix_exact_ends() -> None:
    curve = read_mlc_loaded_latency(MLC_DIR / "ddr5_log_d0_c8_w2_r0")
    assert (curve.latency_ns[0], curve.bandwidth_gbps[0]) == pytest.approx((100.24, 1.5805))
    assert (curve.latency_ns[-1], curve.bandwidth_gbps[-1]) == pytest.approx((279.39, 60.5887))
    assert curve.label == "MLC -W2 (2:1 read:write)"


@needs_mlc
def test_rising_branch_of_cxl_reads_ends_at_delay_50() -> None:
    # By hand: peak 48038.6 MB/s (delay 2), 0.98 * peak = 47077.8; walking from delay 20000 the
    # delay-100 row (46998.9) is still below it and the delay-50 row (47237.2) is the first above.
    branch = read_mlc_loaded_latency(CXL_W0).rising_branch()
    assert len(branch.bandwidth_gbps) == DELAYS_IDLE_FIRST.index(50) + 1 == 15
    assert branch.bandwidth_gbps[-1] == pytest.approx(47.2372)
    assert branch.latency_ns[-1] == pytest.approx(507.81)
    assert branch.idle_latency_ns() == pytest.approx(250.41)
    assert branch.read_fraction == 1.0


@needs_mlc
def test_rising_branch_uses_the_peak_not_the_zero_delay_row() -> None:
    # DDR5 2:1 peaks at delay 50 (61105.0 MB/s); 0.98 * peak = 59882.9 is first reached at delay
    # 200 (60037.7 MB/s), well before the zero-delay row.
    branch = read_mlc_loaded_latency(MLC_DIR / "ddr5_log_d0_c8_w2_r0").rising_branch()
    assert branch.bandwidth_gbps[-1] == pytest.approx(60.0377)
    assert len(branch.bandwidth_gbps) == DELAYS_IDLE_FIRST.index(200) + 1


@needs_mlc
def test_rising_branch_fraction_one_ends_at_peak() -> None:
    curve = read_mlc_loaded_latency(CXL_W0)
    branch = curve.rising_branch(1.0)
    assert branch.bandwidth_gbps[-1] == curve.peak_gbps()
    assert len(branch.bandwidth_gbps) == DELAYS_IDLE_FIRST.index(2) + 1


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.01, math.nan])
def test_rising_branch_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(MeasurementError, match="cxl_log_d0_c16_w0_r0"):
        read_mlc_loaded_latency(CXL_W0).rising_branch(fraction)


def test_rising_branch_needs_two_points() -> None:
    curve = MeasuredCurve(
        "made-up", "flat", 1.0, np.array([10.0, 9.0, 8.0]), np.array([100.0, 110.0, 120.0])
    )
    with pytest.raises(MeasurementError, match=r"^made-up: "):
        curve.rising_branch()


@needs_mlc
def test_measured_curve_arrays_are_read_only() -> None:
    curve = read_mlc_loaded_latency(CXL_W0)
    with pytest.raises(ValueError, match="read-only"):
        curve.latency_ns[0] = 0.0


@needs_mlc
def test_mlc_read_fraction_override() -> None:
    curve = read_mlc_loaded_latency(MLC_DIR / "cxl_log_d0_c16_w2_r0", read_fraction=0.71)
    assert curve.read_fraction == 0.71
    assert curve.label == "MLC -W2 (2:1 read:write)"


# --- MLC variants written to tmp_path ---------------------------------------------------------


@needs_mlc
def test_space_padded_log_matches_tab_separated(tmp_path: Path) -> None:
    spaced = read_mlc_loaded_latency(mlc_log(tmp_path, space_rows(CXL_W0_ROWS)))
    shipped = read_mlc_loaded_latency(CXL_W0)
    np.testing.assert_array_equal(spaced.bandwidth_gbps, shipped.bandwidth_gbps)
    np.testing.assert_array_equal(spaced.latency_ns, shipped.latency_ns)
    assert spaced.read_fraction == 1.0


def test_space_padded_header_and_crlf(tmp_path: Path) -> None:
    text = MLC_PREAMBLE.format(extra="-W5").replace("\t", "   ") + space_rows(CXL_W0_ROWS)
    path = tmp_path / "crlf_log"
    path.write_bytes(text.replace("\n", "\r\n").encode())
    curve = read_mlc_loaded_latency(path)
    assert len(curve.latency_ns) == 19
    assert curve.read_fraction == pytest.approx(2 / 3)


def test_default_run_uses_only_the_loaded_latency_section(tmp_path: Path) -> None:
    path = write(tmp_path, "mlc_default.txt", DEFAULT_RUN.format(rows=tab_rows(DEFAULT_RUN_ROWS)))
    curve = read_mlc_loaded_latency(path)
    assert len(curve.latency_ns) == 19
    assert curve.read_fraction == 1.0
    assert curve.label == "MLC -W0 (all reads)"
    assert (curve.latency_ns[0], curve.bandwidth_gbps[0]) == pytest.approx((82.30, 2.9321))
    assert (curve.latency_ns[-1], curve.bandwidth_gbps[-1]) == pytest.approx((329.26, 159.154))
    # Nothing from the idle-latency matrix, the bandwidth matrix or the cache-to-cache section.
    for foreign in (141.0, 141.5, 79670.3 / 1000, 49.5):
        assert foreign not in curve.latency_ns
        assert foreign not in curve.bandwidth_gbps


def test_table_ends_at_next_section_without_blank_line(tmp_path: Path) -> None:
    text = DEFAULT_RUN.format(rows=tab_rows(DEFAULT_RUN_ROWS)).replace(
        "\nMeasuring cache", "Measuring cache"
    )
    curve = read_mlc_loaded_latency(write(tmp_path, "mlc_default_tight.txt", text))
    assert len(curve.latency_ns) == 19


def test_default_run_with_space_padding(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mlc_default_sp.txt",
        DEFAULT_RUN.format(rows=space_rows(DEFAULT_RUN_ROWS)).replace("\t", "  "),
    )
    assert read_measurements(path)[0].peak_gbps() == pytest.approx(159.2017)


@pytest.mark.parametrize(("code", "expected"), [(12, 5 / 6), (8, 0.5), (4, 5 / 7), (17, 10 / 11)])
def test_mlc_log_with_other_w_codes(tmp_path: Path, code: int, expected: float) -> None:
    curve = read_mlc_loaded_latency(mlc_log(tmp_path, tab_rows(CXL_W0_ROWS), f"-W{code}"))
    assert curve.read_fraction == pytest.approx(expected)


def test_mlc_traffic_table() -> None:
    assert set(MLC_TRAFFIC) == {0, *range(2, 18)}
    expected = {
        0: 1.0,
        2: 3 / 4,
        3: 4 / 5,
        4: 5 / 7,
        5: 2 / 3,
        6: 0.0,
        7: 2 / 3,
        8: 1 / 2,
        9: 3 / 4,
        10: 2 / 3,
        11: 4 / 5,
    }
    expected |= {n + 8: (n + 1) / (n + 2) for n in range(4, 10)}
    for code, fraction in expected.items():
        assert MLC_TRAFFIC[code][0] == pytest.approx(fraction), code
        assert MLC_TRAFFIC[code][1]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    latencies=st.lists(st.floats(50, 2000), min_size=3, max_size=25),
    separator=st.sampled_from(["\t", " ", "   ", "\t  "]),
)
def test_mlc_rows_round_trip(tmp_path: Path, latencies: list[float], separator: str) -> None:
    rows = [(10 * i, round(lat, 2), round(1000.0 + 37.3 * i, 1)) for i, lat in enumerate(latencies)]
    body = "".join(f" {d:05d}{separator}{lat:.2f}{separator}{bw:.1f}\n" for d, lat, bw in rows)
    curve = read_mlc_loaded_latency(mlc_log(tmp_path, body))
    rows.reverse()
    np.testing.assert_allclose(curve.latency_ns, [row[1] for row in rows])
    np.testing.assert_allclose(curve.bandwidth_gbps, [row[2] / 1000 for row in rows])


# --- Mess CSV ---------------------------------------------------------------------------------


@needs_mess
def test_mess_one_curve_per_read_pct() -> None:
    with MESS_CSV.open() as handle:
        distinct = {float(row["read_pct_rounded"]) for row in csv.DictReader(handle)}
    curves = read_mess_curves(MESS_CSV)
    assert len(curves) == len(distinct) == 42
    assert [c.read_fraction for c in curves] == pytest.approx(sorted(p / 100 for p in distinct))
    for curve in curves:
        assert curve.bandwidth_gbps[0] == 0.0  # the zero-traffic idle probe anchors the curve
        assert np.all(curve.bandwidth_gbps[1:] > 0)
        assert len(curve.bandwidth_gbps) >= 2


@needs_mess
def test_mess_full_read_curve() -> None:
    full = read_mess_curves(MESS_CSV)[-1]
    assert full.read_fraction == 1.0
    assert full.label == "Mess 100% reads"
    assert full.source == f"{MESS_CSV}#read_pct=100"
    assert full.peak_gbps() == pytest.approx(267.4, abs=0.05)
    assert full.bandwidth_gbps[:2] == pytest.approx([0.0, 89.38094371555557])  # idle, pause 180
    assert full.latency_ns[1] == pytest.approx(117.14213781198139)
    assert len(full.bandwidth_gbps) == 11


@needs_mess
def test_mess_orders_by_pause_not_bandwidth() -> None:
    by_pct = {round(c.read_fraction * 100): c for c in read_mess_curves(MESS_CSV)}
    half = by_pct[50]
    # The 50 % curve's pause-0 row (231.35 GB/s) comes after the pause-45 row (236.63 GB/s).
    assert half.bandwidth_gbps[-2:] == pytest.approx([236.63136248888887, 231.3510514488889])
    assert half.latency_ns[-1] == pytest.approx(323.86544174567524)
    assert by_pct[67].label == "Mess 67% reads"
    assert by_pct[67].source.endswith("#read_pct=67")


MESS_HEADER = "read_pct_rounded,pause,bandwidth_mean (GB/s),latency_mean (ns)\n"


def test_mess_with_units_in_header_and_all_zero_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "curves.csv",
        MESS_HEADER + "80,100,0,110\n80,0,0,111\n90,500,0,110\n90,50,20.5,120\n90,5,40.0,160\n",
    )
    eighty, ninety = read_mess_curves(path)
    assert eighty.bandwidth_gbps.tolist() == [0.0, 0.0]
    assert ninety.bandwidth_gbps.tolist() == [0.0, 20.5, 40.0]
    assert ninety.read_fraction == 0.9


# --- Mess-simulator bwlat ---------------------------------------------------------------------


@needs_mess
def test_bwlat_58() -> None:
    curve = read_bwlat_curve(BWLAT_DIR / "bwlat_58.txt")
    assert curve.read_fraction == 0.58
    assert curve.label == "bwlat 58% reads"
    assert curve.peak_gbps() == pytest.approx(43.65, abs=0.01)
    assert len(curve.bandwidth_gbps) == 31  # plateau rows kept
    assert np.all(np.diff(curve.bandwidth_gbps) >= 0)
    assert (curve.bandwidth_gbps[0], curve.latency_ns[0]) == pytest.approx((0.319998609, 107.434))


@needs_mess
@pytest.mark.parametrize("pct", [30, 58, 74, 90])
def test_bwlat_files_idle_first(pct: int) -> None:
    path = BWLAT_DIR / f"bwlat_{pct}.txt"
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    curve = read_bwlat_curve(path)
    assert len(curve.bandwidth_gbps) == len(lines)
    assert curve.read_fraction == pct / 100
    assert np.all(np.diff(curve.bandwidth_gbps) >= 0)
    assert curve.rising_branch().latency_ns[-1] < curve.latency_ns.max()


@needs_mess
def test_bwlat_override_and_missing_percentage(tmp_path: Path) -> None:
    path = write(tmp_path, "cxl_curve.txt", "3000 150\n2000 120\n1000 110\n")
    with pytest.raises(MeasurementError, match=r"cxl_curve\.txt: .*read_fraction"):
        read_bwlat_curve(path)
    curve = read_bwlat_curve(path, read_fraction=0.5)
    assert curve.bandwidth_gbps.tolist() == [1.0, 2.0, 3.0]
    assert curve.latency_ns.tolist() == [110.0, 120.0, 150.0]
    assert read_bwlat_curve(BWLAT_DIR / "bwlat_30.txt", read_fraction=0.25).read_fraction == 0.25


# --- Format detection -------------------------------------------------------------------------


@needs_mess
def test_read_measurements_detects_formats(tmp_path: Path) -> None:
    assert read_measurements(CXL_W0)[0].label == "MLC -W0 (all reads)"
    assert len(read_measurements(MESS_CSV)) == 42
    assert read_measurements(BWLAT_DIR / "bwlat_90.txt")[0].read_fraction == 0.9
    # A bare table without the banner is still MLC.
    bare = write(
        tmp_path,
        "bare",
        "Inject Latency Bandwidth\nDelay (ns) MB/sec\n=====\n" + space_rows(CXL_W0_ROWS),
    )
    assert read_measurements(bare, read_fraction=0.9)[0].read_fraction == 0.9


def test_read_measurements_rejects_unknown_format(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.txt", "hello world\n")
    with pytest.raises(MeasurementError, match=r"notes\.txt: line 1: unrecognised"):
        read_measurements(path)


@needs_mess
def test_read_measurements_rejects_override_for_mess() -> None:
    with pytest.raises(MeasurementError, match=r"memory_curves\.csv: read_fraction"):
        read_measurements(MESS_CSV, read_fraction=0.5)


# --- Bad input --------------------------------------------------------------------------------

ROWS = tab_rows(CXL_W0_ROWS)
ROW_LINE_1 = 11  # line number of the first data row after MLC_PREAMBLE

BAD_MLC = {
    "truncated_mid_table": (tab_rows(CXL_W0_ROWS[:2]), "", "truncated"),
    "truncated_row": (ROWS[: ROWS.index("00300") + 12], "", r"line \d+: expected 3 columns"),
    "text_in_row": (ROWS.replace("341.58", "abc"), "", rf"line {ROW_LINE_1 + 7}: latency 'abc'"),
    "negative_bandwidth": (ROWS.replace("36205.4", "-36205.4"), "", "line 18: bandwidth"),
    "nan_latency": (ROWS.replace("341.58", "nan"), "", "line 18: latency 'nan'"),
    "unknown_w": (ROWS, "-W99", "-W99"),
    "malformed_w": (ROWS, "-Wx", "'-Wx'"),
    "random_refused": (
        "Random access is supported only for traffic types R, W2, W5 and W6\n",
        "",
        "rejected",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_MLC))
def test_bad_mlc_logs(tmp_path: Path, case: str) -> None:
    rows, extra, problem = BAD_MLC[case]
    path = mlc_log(tmp_path, rows, extra, name=f"bad_{case}")
    for reader in (read_mlc_loaded_latency, read_measurements):
        with pytest.raises(MeasurementError, match=problem) as info:
            reader(path)
        assert str(info.value).startswith(str(path))


def test_mlc_refusal_alone(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "refused.log",
        "Random access is supported only for traffic types R, W2, W5 and W6\n",
    )
    with pytest.raises(MeasurementError, match=r"refused\.log: line 1: MLC rejected"):
        read_measurements(path)


def test_mlc_without_table(tmp_path: Path) -> None:
    path = write(tmp_path, "idle_only.log", DEFAULT_RUN.split("Measuring Loaded")[0])
    with pytest.raises(MeasurementError, match=r"idle_only\.log: no loaded-latency table"):
        read_mlc_loaded_latency(path)


@pytest.mark.parametrize(
    "reader", [read_mlc_loaded_latency, read_mess_curves, read_bwlat_curve, read_measurements]
)
def test_missing_and_empty_files(tmp_path: Path, reader) -> None:
    missing = tmp_path / "bwlat_50_missing.txt"
    with pytest.raises(MeasurementError, match=r"bwlat_50_missing\.txt: file not found"):
        reader(missing)
    empty = write(tmp_path, "bwlat_50.txt", "\n  \n")
    with pytest.raises(MeasurementError, match=r"bwlat_50\.txt: file is empty"):
        reader(empty)


@needs_mess
@pytest.mark.parametrize("fraction", [1.5, -0.1, math.nan])
def test_read_fraction_outside_unit_interval(fraction: float) -> None:
    with pytest.raises(MeasurementError, match="cxl_log_d0_c16_w0_r0: read_fraction"):
        read_mlc_loaded_latency(CXL_W0, read_fraction=fraction)
    with pytest.raises(MeasurementError, match=r"bwlat_58\.txt: read_fraction"):
        read_bwlat_curve(BWLAT_DIR / "bwlat_58.txt", read_fraction=fraction)


BAD_MESS = {
    "missing_column": (
        "read_pct_rounded,pause,bandwidth_mean\n90,5,1\n",
        ": line 1: .*latency_mean",
    ),
    "text_field": (MESS_HEADER + "90,50,20.5,120\n90,5,fast,160\n", ": line 3: bandwidth_mean"),
    "short_row": (MESS_HEADER + "90,50,20.5,120\n90,5,40\n", ": line 3: expected 4 fields"),
    "negative": (MESS_HEADER + "90,50,20.5,-120\n90,5,40,160\n", ": line 2: latency_mean"),
    "one_point": (MESS_HEADER + "90,50,20.5,120\n", "#read_pct=90: .*2 points"),
    "no_rows": (MESS_HEADER, ": no data rows"),
    "pct_above_100": (MESS_HEADER + "150,50,20.5,120\n150,5,40,160\n", ": line 2: .*above 100"),
}


@pytest.mark.parametrize("case", sorted(BAD_MESS))
def test_bad_mess_csv(tmp_path: Path, case: str) -> None:
    text, problem = BAD_MESS[case]
    path = write(tmp_path, f"{case}.csv", text)
    with pytest.raises(MeasurementError, match=f"^{re.escape(str(path))}{problem}"):
        read_mess_curves(path)


BAD_BWLAT = {
    "three_columns": ("3000 150 1\n2000 120\n", "line 1: expected 2 columns"),
    "text": ("3000 150\n2000 slow\n", "line 2: latency 'slow'"),
    "negative": ("3000 150\n-2000 120\n", "line 2: bandwidth"),
    "inf": ("3000 150\n2000 inf\n", "line 2: latency"),
    "one_point": ("3000 150\n", ".*2 points"),
}


@pytest.mark.parametrize("case", sorted(BAD_BWLAT))
def test_bad_bwlat(tmp_path: Path, case: str) -> None:
    text, problem = BAD_BWLAT[case]
    path = write(tmp_path, f"bwlat_{len(case)}.txt", text)
    with pytest.raises(MeasurementError, match=f"^{re.escape(str(path))}: {problem}"):
        read_bwlat_curve(path)
