"""Migration cost: calibration against the published move_pages() rates, traffic per node."""

from __future__ import annotations

import numpy as np
import pytest

from tierenv.memory.migration_cost import MigrationCost

KIB, MIB = 1024, 1024 * 1024


def test_defaults_reproduce_the_published_move_pages_rates() -> None:
    cost = MigrationCost()
    # S. Garg's move_pages() rates (AMD page-migration batch-copy RFC v4): 3.31-3.55 GB/s for
    # 4 KiB pages, 10.9-11.0 GB/s for THPs.
    assert 3.31 <= cost.throughput_gbps(4 * KIB) <= 3.55
    assert 10.9 <= cost.throughput_gbps(2 * MIB) <= 11.0
    # About 1.2 µs per 4 KiB page and 190 µs per THP.
    assert cost.seconds_per_folio(4 * KIB) == pytest.approx(0.85e-6 + 4096 / 11e9)
    assert cost.seconds_per_folio(2 * MIB) == pytest.approx(191.5e-6, rel=1e-3)


def test_cpu_seconds_by_hand() -> None:
    cost = MigrationCost(fixed_us_per_folio=1.0, copy_gbps=10.0)
    # 1000 folios of 1 MB (10^6 bytes): 1000 * (1 µs + 100 µs) = 0.101 s.
    assert cost.cpu_seconds(1000, 1_000_000) == pytest.approx(0.101)
    assert cost.cpu_seconds(0, 4096) == 0.0
    assert cost.cpu_seconds(np.array([1, 2]), 1_000_000).tolist() == pytest.approx([101e-6, 202e-6])


def test_traffic_reads_the_source_and_writes_the_destination() -> None:
    cost = MigrationCost()
    moved = np.array([[0, 500, 0], [100, 0, 0], [0, 0, 0]])  # pages, row -> column
    read, write = cost.node_traffic(moved, 2 * MIB, interval_s=0.1)
    page_gbps = 2 * MIB / 0.1 / 1e9  # one page per interval, in GB/s
    assert read.tolist() == pytest.approx([500 * page_gbps, 100 * page_gbps, 0.0])
    assert write.tolist() == pytest.approx([100 * page_gbps, 500 * page_gbps, 0.0])
    background, fraction = cost.background(moved, 2 * MIB, interval_s=0.1)
    assert background.tolist() == pytest.approx([600 * page_gbps, 600 * page_gbps, 0.0])
    assert fraction.tolist() == pytest.approx([5 / 6, 1 / 6, 1.0])  # idle node: 1


def test_traffic_keeps_batch_axes() -> None:
    moved = np.zeros((4, 2, 2))
    moved[:, 0, 1] = [0, 1, 2, 3]
    read, write = MigrationCost().node_traffic(moved, 4096, 1.0)
    assert read.shape == (4, 2) and write[:, 1].tolist() == pytest.approx(
        [0, 4096e-9, 8192e-9, 12288e-9]
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: MigrationCost(copy_gbps=0.0), "copy_gbps"),
        (lambda: MigrationCost(fixed_us_per_folio=float("nan")), "fixed_us_per_folio"),
        (lambda: MigrationCost().cpu_seconds(-1, 4096), "moved_pages"),
        (lambda: MigrationCost().node_traffic(np.zeros((2, 3)), 4096, 1.0), r"\(\.\.\., nodes"),
        (lambda: MigrationCost().node_traffic(np.zeros((2, 2)), 4096, 0.0), "interval_s"),
        (lambda: MigrationCost().node_traffic(-np.ones((2, 2)), 4096, 1.0), ">= 0"),
        (lambda: MigrationCost().background(np.zeros((2, 2)), 0, 1.0), "page_size"),
    ],
)
def test_bad_input_names_the_field(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()
