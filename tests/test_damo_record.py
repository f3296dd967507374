"""damo records: the real record, its replay as page weights, and every load error."""

from __future__ import annotations

import copy
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import DAMO_RECORD, data_path, needs_data
from tierenv.workload.damo_record import (
    DamonRecord,
    DamonSnapshot,
    DamoRecordError,
    load_damo_record,
)

RECORD = data_path(DAMO_RECORD)
pytestmark = needs_data(DAMO_RECORD)
PAGE = 4096


@pytest.fixture(scope="module")
def record() -> DamonRecord:
    return load_damo_record(RECORD)


@pytest.fixture(scope="module")
def raw() -> list:
    return json.loads(zlib.decompress(RECORD.read_bytes()))


def write(tmp_path: Path, data: object, compress: bool = True) -> Path:
    text = json.dumps(data).encode()
    path = tmp_path / ("damon.data" if compress else "damon.json")
    path.write_bytes(zlib.compress(text) if compress else text)
    return path


def test_real_record_loads(record: DamonRecord) -> None:
    assert len(record) == 543
    assert record.source == str(RECORD)
    assert record.target_id == 18446623438842320000
    assert record.sample_us is None and record.aggr_us is None  # an old-format record
    sizes = [len(s) for s in record.snapshots]
    assert min(sizes) == 7 and max(sizes) == 21
    covered = [int((s.end - s.start).sum()) for s in record.snapshots]
    assert 35 << 20 < min(covered) < 45 << 20  # about 40 MB monitored at first
    lo, hi = record.span()
    assert lo == 94_827_419_009_024 and hi > lo
    assert all(np.all(s.age == -1) for s in record.snapshots)  # ages are null in this record
    assert record.max_samples == 21  # 5 ms / 100 ms plus the kernel's extra sample
    assert 50 < record.duration_s < 60


def test_times_increase(record: DamonRecord) -> None:
    times = record.times_s
    assert times[0] == 0.0
    assert np.all(np.diff(times) > 0)
    assert all(s.end_ns > s.start_ns for s in record.snapshots)
    assert times[-1] < record.duration_s


def test_layout_covers_heap_mmap_and_stack(record: DamonRecord) -> None:
    vmas = record.layout(PAGE)
    assert len(vmas) == 3
    assert vmas[0][0] == record.span()[0]
    assert vmas[-1][0] + vmas[-1][1] == record.span()[1]
    for snapshot in record.snapshots:
        for start, end in zip(snapshot.start, snapshot.end, strict=True):
            assert any(s <= start and end <= s + n for s, n in vmas)


def test_page_weights_shape_and_range(record: DamonRecord) -> None:
    times, weights = record.page_weights(PAGE)
    n_pages = sum(size for _, size in record.layout(PAGE)) // PAGE
    assert weights.shape == (543, n_pages)
    assert np.array_equal(times, record.times_s)
    assert weights.min() >= 0.0 and weights.max() <= 1.0
    # 4 KiB pages: every covered page carries its region's nr_accesses / max_samples exactly
    levels = np.unique(weights)
    assert np.allclose(levels * 21, np.round(levels * 21), atol=1e-5)
    # frequency-weighted bytes are conserved
    for row in (0, 100, 542):
        s = record.snapshots[row]
        expected = float(np.sum(s.nr_accesses / 21 * (s.end - s.start)))
        assert weights[row].sum() * PAGE == pytest.approx(expected, rel=1e-5)


def test_hottest_regions_get_the_largest_weights(record: DamonRecord) -> None:
    _, weights = record.page_weights(PAGE)
    vmas = record.layout(PAGE)
    page_lo = np.concatenate([np.arange(s, s + n, PAGE) for s, n in vmas])
    for row in (50, 300, 542):
        s = record.snapshots[row]
        hottest = int(np.argmax(s.nr_accesses))
        inside = (page_lo >= s.start[hottest]) & (page_lo < s.end[hottest])
        assert np.allclose(weights[row][inside], s.nr_accesses[hottest] / 21)
        assert weights[row][inside].min() == pytest.approx(weights[row].max())
        cold = s.nr_accesses == 0
        for start, end in zip(s.start[cold], s.end[cold], strict=True):
            assert not weights[row][(page_lo >= start) & (page_lo < end)].any()


def test_huge_pages_and_windows(record: DamonRecord) -> None:
    _, weights = record.page_weights(2 << 20)
    assert weights.shape[1] == sum(n for _, n in record.layout(2 << 20)) // (2 << 20)
    assert weights.max() <= 1.0
    lo = record.span()[0]
    _, window = record.page_weights(PAGE, lo=lo, hi=lo + (40 << 20))
    assert window.shape == (543, 10240)
    _, full = record.page_weights(PAGE)
    first = record.layout(PAGE)[0][1] // PAGE  # the heap VMA starts at lo
    assert np.array_equal(window[:, :first], full[:, :first])
    with pytest.raises(DamoRecordError, match=r"exceed the limit.*page size of at least"):
        record.page_weights(PAGE, lo=lo)  # the whole span, heap to stack
    with pytest.raises(DamoRecordError, match="lo < hi"):
        record.page_weights(PAGE, lo=lo, hi=lo)


def test_plain_json_records_and_record_index(tmp_path: Path, raw: list) -> None:
    second = copy.deepcopy(raw[0])
    second["target_id"] = 7
    second["intervals"] = {"sample_us": "5000", "aggr_us": "200,000"}
    second["snapshots"] = second["snapshots"][:3]
    second["snapshots"][0]["regions"][0]["age"] = {"usec": "0", "aggr_intervals": "4"}
    path = write(tmp_path, [raw[0], second], compress=False)
    assert len(load_damo_record(path)) == 543
    other = load_damo_record(path, record_index=1)
    assert (len(other), other.target_id, other.sample_us, other.aggr_us) == (3, 7, 5000, 200000)
    assert other.snapshots[0].age[0] == 4
    assert other.max_samples == 40  # aggr_us / sample_us when the record says
    with pytest.raises(DamoRecordError, match=r"record_index 2 out of range.*2 record"):
        load_damo_record(path, record_index=2)


def test_snapshot_arrays_are_read_only(record: DamonRecord) -> None:
    with pytest.raises(ValueError, match="read-only"):
        record.snapshots[0].start[0] = 0


def test_truncated_compressed_file(tmp_path: Path) -> None:
    data = RECORD.read_bytes()
    path = tmp_path / "half.data"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DamoRecordError, match=rf"^{path}: truncated compressed record"):
        load_damo_record(path)


def test_corrupt_compressed_file(tmp_path: Path) -> None:
    data = bytearray(RECORD.read_bytes())
    data[100:110] = b"\xff" * 10
    path = tmp_path / "corrupt.data"
    path.write_bytes(bytes(data))
    with pytest.raises(DamoRecordError, match=rf"^{path}: corrupt compressed record"):
        load_damo_record(path)


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[{"snapshots": [\n{"start_time": 1,,}]}]')
    with pytest.raises(DamoRecordError, match=rf"^{path}: invalid JSON at line 2 column"):
        load_damo_record(path)
    path.write_bytes(zlib.compress(b'[{"snapshots": '))
    with pytest.raises(DamoRecordError, match=rf"^{path}: invalid JSON"):
        load_damo_record(path)


def mutated(raw: list, change) -> list:
    data = copy.deepcopy(raw)
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d[0]["snapshots"][12]["regions"][3].pop("start"),
            r"\[0\]\.snapshots\[12\]\.regions\[3\]\.start: missing key",
        ),
        (
            lambda d: d[0]["snapshots"][5]["regions"][0]["nr_accesses"].pop("samples"),
            r"\[0\]\.snapshots\[5\]\.regions\[0\]\.nr_accesses\.samples: missing key",
        ),
        (lambda d: d[0].pop("snapshots"), r"\[0\]\.snapshots: missing key"),
        (
            lambda d: d[0]["snapshots"][2].pop("end_time"),
            r"\[0\]\.snapshots\[2\]\.end_time: missing",
        ),
        (lambda d: d[0].update(snapshots=[]), r"\[0\]\.snapshots: the snapshot list is empty"),
        (
            lambda d: d[0]["snapshots"][7]["regions"][1].update(start="94,82,7419,009,024"),
            r"\[0\]\.snapshots\[7\]\.regions\[1\]\.start: expected a non-negative integer.*"
            r"'94,82,7419,009,024'",
        ),
        (
            lambda d: d[0]["snapshots"][7]["regions"][1].update(end="12.5 MiB"),
            r"\[0\]\.snapshots\[7\]\.regions\[1\]\.end: expected a non-negative integer",
        ),
        (
            lambda d: d[0]["snapshots"][3]["regions"][2].update(
                start=d[0]["snapshots"][3]["regions"][1]["start"]
            ),
            r"\[0\]\.snapshots\[3\]: regions\[2\]: starts at .* before regions\[1\] ends",
        ),
        (
            lambda d: d[0]["snapshots"][3]["regions"].reverse(),
            r"\[0\]\.snapshots\[3\]: regions\[1\]: starts at .*out of order or overlapping",
        ),
        (
            lambda d: d[0]["snapshots"][4]["regions"][0].update(
                end=d[0]["snapshots"][4]["regions"][0]["start"]
            ),
            r"\[0\]\.snapshots\[4\]: regions\[0\]: end .* is not after start",
        ),
        (
            lambda d: d[0]["snapshots"][9].update(start_time="1"),
            r"\[0\]\.snapshots\[9\]\.start_time: 1 is before the previous snapshot's start",
        ),
        (
            lambda d: d[0]["snapshots"][1].update(regions={}),
            r"\[0\]\.snapshots\[1\]\.regions: expected a list",
        ),
        (lambda d: d.clear(), "the record list is empty"),
    ],
)
def test_errors_name_the_file_and_json_path(
    tmp_path: Path, raw: list, change, expected: str
) -> None:
    path = write(tmp_path, mutated(raw, change))
    with pytest.raises(DamoRecordError, match=rf"^{path}: {expected}"):
        load_damo_record(path)


def test_not_a_record(tmp_path: Path) -> None:
    path = tmp_path / "perf.data"
    path.write_bytes(b"\x00\xff\xfe PERFILE2")
    with pytest.raises(DamoRecordError, match="neither a zlib-compressed nor a JSON"):
        load_damo_record(path)
    path.write_text('{"snapshots": []}')
    with pytest.raises(DamoRecordError, match="expected a JSON list of records"):
        load_damo_record(path)
    with pytest.raises(DamoRecordError, match="cannot read"):
        load_damo_record(tmp_path / "missing")


def test_built_snapshots_are_checked() -> None:
    with pytest.raises(DamoRecordError, match="not after start"):
        DamonSnapshot(0, 1, np.array([10]), np.array([10]), np.array([0]), np.array([-1]))
    with pytest.raises(DamoRecordError, match="at least one snapshot"):
        DamonRecord((), None, None, None)
