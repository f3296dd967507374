"""masim configs: the shipped files, the page-weight conversion and every parse error."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import data_path, needs_data
from tierenv.workload.masim import (
    MasimAccess,
    MasimConfig,
    MasimError,
    MasimPhase,
    MasimRegion,
    load_masim,
    parse_masim,
)

MASIM = data_path("masim")
pytestmark = needs_data("masim")
PAGE = 4096


def shipped() -> list[Path]:
    return sorted(p for p in MASIM.iterdir() if p.is_file()) if MASIM.is_dir() else []


def region_slices(config: MasimConfig, page_size: int) -> dict[str, slice]:
    slices, cursor = {}, 0
    for region in config.regions:
        n = region.n_pages(page_size)
        slices[region.name] = slice(cursor, cursor + n)
        cursor += n
    return slices


@pytest.mark.parametrize("path", shipped(), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_masim(path)
    assert config.regions and config.phases
    assert config.source == str(path)
    page_size = 2 << 20  # mem_perf.cfg maps 10 GiB
    phases = config.page_weights(page_size)
    assert len(phases) == len(config.phases)
    n_pages = sum(size for _, size in config.layout(page_size)) // page_size
    for duration, weights, read_fraction in phases:
        assert duration > 0
        assert weights.shape == (n_pages,)
        assert weights.min() >= 0
        assert weights.sum() == pytest.approx(1.0)
        assert 0.0 <= read_fraction <= 1.0


def test_default_is_a_config_with_modes_and_no_init_files() -> None:
    config = load_masim(MASIM / "default")
    assert [(r.name, r.size_bytes, r.init_file) for r in config.regions] == [
        ("a", 256, None),
        ("b", 64, None),
        ("c", 128, None),
    ]
    second = config.phases[1]
    assert second.name == "example phase 2"
    assert [(a.region, a.random, a.stride_bytes, a.weight, a.rw) for a in second.accesses] == [
        ("c", True, 64, 50, "ro"),
        ("b", False, 4096, 50, "rw"),
    ]
    _, _, read_fraction = config.page_weights(PAGE)[1]
    assert read_fraction == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)


def test_stairs_hammers_one_region_per_phase() -> None:
    config = load_masim(MASIM / "stairs.cfg")
    assert len(config.regions) == 10
    assert all(r.size_bytes == 10_000_000 for r in config.regions)
    slices = region_slices(config, PAGE)
    phases = config.page_weights(PAGE)
    duration, initial, read_fraction = phases[0]
    assert duration == 10.0 and read_fraction == 0.0  # no mode given: masim's default wo
    for name, part in slices.items():
        assert initial[part].sum() == pytest.approx(0.1), name
    for k, (duration, weights, _) in enumerate(phases[1:]):
        assert duration == 5.0
        hot = slices[f"s{k}"]
        assert weights[hot].sum() == pytest.approx(1.0)
        assert np.allclose(weights[hot], weights[hot][0])  # a 4 KiB stride touches every page


def test_zigzag_alternates_between_its_two_regions() -> None:
    config = load_masim(MASIM / "zigzag.cfg")
    slices = region_slices(config, PAGE)
    hot = [
        max(slices, key=lambda name, w=weights: w[slices[name]].sum())
        for _, weights, _ in config.page_weights(PAGE)[1:]
    ]
    assert hot == ["a", "b"] * 6
    phases = config.page_weights(PAGE)[1:]
    for (_, weights, _), name in zip(phases, hot, strict=True):
        assert weights[slices[name]].sum() == pytest.approx(1.0)


def test_layout_gives_one_page_aligned_vma_per_region_with_gaps() -> None:
    config = load_masim(MASIM / "stairs.cfg")
    vmas = config.layout(PAGE)
    assert len(vmas) == 10
    assert vmas[0][0] == 0x7F00_0000_0000
    for (start, size), region in zip(vmas, config.regions, strict=True):
        assert start % PAGE == 0 and size % PAGE == 0
        assert region.size_bytes <= size < region.size_bytes + PAGE
    for (a, a_size), (b, _) in itertools.pairwise(vmas):
        assert b - (a + a_size) >= 2 << 20
    huge = config.layout(2 << 20, gap_bytes=0)
    assert all(size == 5 * (2 << 20) for _, size in huge)  # 10 MB rounds up to 5 huge pages
    with pytest.raises(MasimError, match="multiple of page size"):
        config.layout(PAGE, base=PAGE + 1)


def test_sequential_stride_above_page_size_touches_every_kth_page() -> None:
    text = "r, 40960\n\nscan\n100\nr, 0, 8192, 1, ro\n"
    _, weights, read_fraction = parse_masim(text).page_weights(PAGE)[0]
    assert weights.size == 10
    assert np.flatnonzero(weights).tolist() == [0, 2, 4, 6, 8]
    assert np.allclose(weights[::2], 0.2)
    assert read_fraction == 1.0
    # a stride that is not a multiple of the page size touches the pages its addresses hit
    text = "r, 40960\n\nscan\n100\nr, 0, 6144, 1\n"
    _, weights, _ = parse_masim(text).page_weights(PAGE)[0]
    assert np.flatnonzero(weights).tolist() == [0, 1, 3, 4, 6, 7, 9]
    # random accesses cover the whole region whatever the stride
    text = "r, 40960\n\nscan\n100\nr, 1, 8192, 1\n"
    _, weights, _ = parse_masim(text).page_weights(PAGE)[0]
    assert np.allclose(weights, 0.1)


def test_shares_follow_the_weights_and_read_modes() -> None:
    text = "a, 8192\nb, 4096\n\nmix\n1000\na, 1, 64, 3, ro\nb, 0, 64, 1, wo\nb, 1, 64, 0, rw\n"
    duration, weights, read_fraction = parse_masim(text).page_weights(PAGE)[0]
    assert duration == 1.0
    assert weights.tolist() == pytest.approx([0.375, 0.375, 0.25])
    assert read_fraction == pytest.approx(0.75)


def test_sizes_round_trip_through_text() -> None:
    for path in shipped():
        config = load_masim(path)
        again = parse_masim(config.to_text(), source=config.source)
        assert again == config
        assert [r.size_bytes for r in again.regions] == [r.size_bytes for r in config.regions]
    built = MasimConfig(
        (MasimRegion("big", 10 << 30, "init.dat"), MasimRegion("small", 4097)),
        (
            MasimPhase(
                "p", 5, (MasimAccess("big", False, 4096, 2), MasimAccess("small", True, 8, 1, "rw"))
            ),
        ),
    )
    assert parse_masim(built.to_text(), source=built.source) == built
    assert built.layout(PAGE)[1][1] == 2 * PAGE


GOOD_REGIONS = "#regions\na, 4096\nb, 8192\n"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (GOOD_REGIONS + "\np\n100\nc, 0, 64, 1\n", 7, "unknown region 'c'"),
        (GOOD_REGIONS + "\np\n100\na, 0, 64\n", 7, "4 or 5 comma-separated fields"),
        (GOOD_REGIONS + "\np\n100\na, 0, 64, 1, ro, x\n", 7, "4 or 5 comma-separated fields"),
        ("a, 4096, none, x\n\np\n100\na, 0, 64, 1\n", 1, "2 or 3 comma-separated fields"),
        ("a, 4096\nb, 10MB\n\np\n100\na, 0, 64, 1\n", 2, "region size (bytes) must be an integer"),
        ("a, 4096\nb, 0\n\np\n100\na, 0, 64, 1\n", 2, "size must be > 0"),
        (GOOD_REGIONS + "\np\n1.5\na, 0, 64, 1\n", 6, "must be an integer"),
        (GOOD_REGIONS + "\np\n-100\na, 0, 64, 1\n", 6, "duration must be > 0"),
        (GOOD_REGIONS + "\np\n0\na, 0, 64, 1\n", 6, "duration must be > 0"),
        ("a, 4096\n# comment\na, 8192\n\np\n100\na, 0, 64, 1\n", 3, "duplicate region name 'a'"),
        (GOOD_REGIONS + "\np\n100\n", 5, "has no access lines"),
        (GOOD_REGIONS + "\np\n100\na, 0, 64, 0\nb, 1, 64, 0\n", 5, "all access weights are zero"),
        (GOOD_REGIONS + "\np\n100\na, 0, 64, 1\n\ntruncated\n", 9, "truncated"),
        (GOOD_REGIONS + "\np\n100\na, 2, 64, 1\n", 7, "randomness must be 1"),
        (GOOD_REGIONS + "\np\n100\na, 0, 0, 1\n", 7, "stride must be > 0"),
        (GOOD_REGIONS + "\np\n100\na, 0, 64, -1\n", 7, "weight must be an integer >= 0"),
        (GOOD_REGIONS + "\np\n100\na, 0, 64, 1, rx\n", 7, "read/write mode"),
        (GOOD_REGIONS, 3, "no phase"),
        ("", 1, "empty"),
        ("# only\n# comments\n\n\n", 1, "empty"),
    ],
)
def test_errors_name_the_line_and_the_problem(text: str, line: int, problem: str) -> None:
    with pytest.raises(MasimError) as caught:
        parse_masim(text, source="bad.cfg")
    message = str(caught.value)
    assert message.startswith(f"bad.cfg:{line}: "), message
    assert problem in message


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.cfg"
    path.write_text("a, 4096\n\np\n100\nz, 0, 64, 1\n")
    with pytest.raises(MasimError, match=rf"^{path}:5: unknown region 'z'"):
        load_masim(path)
    with pytest.raises(MasimError, match="cannot read"):
        load_masim(tmp_path / "missing.cfg")


def test_built_configs_are_checked() -> None:
    phase = MasimPhase("p", 10, (MasimAccess("x", False, 64, 1),))
    with pytest.raises(MasimError, match="unknown region 'x'"):
        MasimConfig((MasimRegion("a", 64),), (phase,))
    with pytest.raises(MasimError, match="duplicate region names"):
        MasimConfig((MasimRegion("x", 64), MasimRegion("x", 64)), (phase,))
    with pytest.raises(MasimError, match="read/write mode"):
        MasimAccess("x", False, 64, 1, "rwx")
