"""Node profiles: the shipped files, saving and loading, scaling and bad profile files."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w

from tests.shared_data import MESS_BWLAT, MESS_CSV, MLC, data_path, needs_data, reference_root
from tierenv.hardware.curves import PiecewiseCurve
from tierenv.hardware.fit import fit_profile
from tierenv.hardware.measurements import read_measurements
from tierenv.hardware.profile import (
    NodeProfile,
    ProfileError,
    load_profile,
    load_profile_file,
    profile_from_dict,
    shipped_profile_dir,
    shipped_profile_names,
)
from tierenv.hardware.remote_view import REMOTE_VIEW_RECIPES
from tierenv.hardware.shipped import MEASURED_RECIPES, PUBLISHED_SETUPS, _measured, build
from tierenv.hardware.solver import NodeSet, solve

MLC_DIR = data_path(MLC)
needs_mlc = needs_data(MLC)
SHIPPED = shipped_profile_names()
READ_FRACTIONS = (0.0, 0.5, 0.75, 1.0)
# A denser set of mixes for comparing two profiles (includes the MLC -W5 mix 2/3).
COMPARE_MIXES = (0.0, 0.25, 0.5, 2 / 3, 0.75, 0.9, 1.0)


def load_grid(profile: NodeProfile, read_fraction: float, points: int = 25) -> np.ndarray:
    """Offered bandwidths from idle to just below the largest load the profile serves."""
    capacity = float(profile.saturation_gbps(read_fraction))
    return np.linspace(0.0, 0.97 * capacity, points)


def assert_same_model(actual: NodeProfile, expected: NodeProfile, rtol: float) -> None:
    """Saturation bandwidth and loaded latency agree on a grid of mixes and loads."""
    for r in COMPARE_MIXES:
        np.testing.assert_allclose(
            actual.saturation_gbps(r),
            expected.saturation_gbps(r),
            rtol=rtol,
            err_msg=f"{expected.name}: saturation at read fraction {r:.3f}",
        )
        grid = load_grid(expected, r)
        np.testing.assert_allclose(
            actual.latency_ns(grid, r),
            expected.latency_ns(grid, r),
            rtol=rtol,
            err_msg=f"{expected.name}: latency at read fraction {r:.3f}",
        )


# --- Shipped profiles -------------------------------------------------------------------------


def test_the_shipped_profiles_are_the_documented_sixteen() -> None:
    assert SHIPPED == [
        "amd-ddr5-72gbs",
        "bytedance-cxl-asic",
        "bytedance-cxl-remote-view",
        "bytedance-ddr5-remote-socket",
        "bytedance-ddr5-remote-view",
        "bytedance-ddr5-snc",
        "cxl-26gbs",
        "generic-cxl-x8",
        "icelake-ddr4-remote-socket",
        "icelake-ddr4-socket",
        "meta-like-cxl",
        "micron-cz122-x8",
        "micron-cz122-x8-8dev",
        "spr-8460y-ddr5-socket",
        "spr-cxl-expander-stream",
        "xeon6-ddr5-6400-12ch",
    ]
    assert set(PUBLISHED_SETUPS) <= set(SHIPPED)
    assert {recipe["name"] for _, _, recipe in REMOTE_VIEW_RECIPES} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_is_physical(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert math.isfinite(profile.idle_latency_ns) and profile.idle_latency_ns > 0
    assert profile.provenance.get("source"), f"{name}: no provenance source"
    for r in READ_FRACTIONS:
        capacity = float(profile.saturation_gbps(r))
        assert math.isfinite(capacity) and capacity > 0, (name, r, capacity)
        grid = load_grid(profile, r, points=40)
        latency = profile.latency_ns(grid, r)
        assert np.all(np.isfinite(latency)), (name, r)
        assert latency[0] == pytest.approx(profile.idle_latency_ns, rel=1e-12)
        assert np.all(np.diff(latency) > 0), f"{name}: latency not increasing at r={r}"
        # Beyond capacity the open-loop latency is infinite, never NaN.
        beyond = profile.latency_ns(np.array([1.01, 2.0]) * capacity, r)
        assert np.all(np.isposinf(beyond)), (name, r, beyond)
        # The solver uses the inverse: the node serves what it was offered at that latency.
        np.testing.assert_allclose(
            profile.served_gbps(latency[1:], r), grid[1:], rtol=1e-7, err_msg=f"{name} r={r}"
        )


def test_cxl_link_raises_capacity_under_a_mix_while_ddr_loses_it() -> None:
    """The link-direction effect: a full-duplex CXL link carries more under 2:1 than reads
    alone; a half-duplex DDR bus carries less."""
    cxl = load_profile("bytedance-cxl-asic")
    ddr = load_profile("bytedance-ddr5-snc")
    assert float(cxl.saturation_gbps(0.75)) > 1.05 * float(cxl.saturation_gbps(1.0))
    assert float(ddr.saturation_gbps(0.75)) < 0.95 * float(ddr.saturation_gbps(1.0))


@needs_mlc
@pytest.mark.parametrize(
    ("name", "device"),
    [("bytedance-cxl-asic", "cxl_log_d0_c16"), ("bytedance-ddr5-snc", "ddr5_log_d0_c8")],
)
def test_shipped_capacity_matches_the_measured_peaks(name: str, device: str) -> None:
    profile = load_profile(name)
    for code in ("w0", "w2", "w5", "w6"):
        curve = read_measurements(MLC_DIR / f"{device}_{code}_r0")[0]
        model = float(profile.saturation_gbps(curve.read_fraction))
        assert model == pytest.approx(curve.peak_gbps(), rel=0.02), (name, code)


@needs_data(MLC, MESS_CSV, MESS_BWLAT)
@pytest.mark.slow
def test_shipped_profiles_are_reproducible_from_the_data() -> None:
    """Rebuilding the profiles from the reference data gives the shipped files (to
    rounding); the Mess curves are only in ../shared."""
    rebuilt = {
        fit.profile.name: fit.profile for fit in build(reference_root(MLC, MESS_CSV, MESS_BWLAT))
    }
    assert sorted(rebuilt) == SHIPPED
    for name, profile in rebuilt.items():
        shipped = load_profile(name)
        assert profile.kind == shipped.kind
        assert profile.idle_latency_ns == pytest.approx(shipped.idle_latency_ns, rel=1e-3)
        assert_same_model(profile, shipped, rtol=1e-3)


MLC_RECIPES = [recipe for recipe in [*MEASURED_RECIPES, *REMOTE_VIEW_RECIPES] if recipe[0] == MLC]


@needs_mlc
@pytest.mark.slow
@pytest.mark.parametrize("recipe", MLC_RECIPES, ids=lambda recipe: recipe[2]["name"])
def test_mlc_profiles_are_reproducible_from_the_shipped_logs(recipe) -> None:
    """The four profiles fitted to the ByteDance MLC logs, rebuilt from the copy in data/
    (what a clone without ../shared has), give the shipped files."""
    folder, pattern, arguments = recipe
    profile = fit_profile(_measured(data_path(folder), pattern), **arguments).profile
    shipped = load_profile(arguments["name"])
    assert profile.kind == shipped.kind
    assert profile.idle_latency_ns == pytest.approx(shipped.idle_latency_ns, rel=1e-3)
    assert_same_model(profile, shipped, rtol=1e-3)


# --- Profiles mirroring published setups -------------------------------------------------------


def read_peak(profile: NodeProfile) -> float:
    return float(profile.saturation_gbps(1.0))


def excess_by_load(profile: NodeProfile, r: float, loads: np.ndarray) -> np.ndarray:
    """Latency above idle at loads given as fractions of the node's capacity at mix r."""
    capacity = float(profile.saturation_gbps(r))
    return profile.latency_ns(loads * capacity, r) - profile.idle_latency_ns


LOADS = np.linspace(0.0, 0.97, 25)

# name -> (the profile it is scaled from, bandwidth factor, idle latency in ns). The factors
# and idle latencies are the published or stated anchors of shipped.py's provenance.
SCALED_SETUPS: dict[str, tuple[str, float, float | None]] = {
    # 12/8 channels x 6400/4800 MT/s; idle kept from the SPR socket.
    "xeon6-ddr5-6400-12ch": ("spr-8460y-ddr5-socket", 12 / 8 * 6400 / 4800, None),
    # No CZ122 figure in the references: the generic x8 device unchanged.
    "micron-cz122-x8": ("generic-cxl-x8", 1.0, None),
    # Eight devices as one node: x8 bandwidth, the same latency.
    "micron-cz122-x8-8dev": ("micron-cz122-x8", 8.0, None),
    # 8 channels DDR4-3200 against 8 of DDR5-4800; idle of the Mess Cascade Lake DDR4 socket.
    "icelake-ddr4-socket": ("spr-8460y-ddr5-socket", 3200 / 4800, 90.0),
}

# name -> (shape source, published reads-only peak GB/s, idle latency ns)
PEAK_SETUPS: dict[str, tuple[str, float, float | None]] = {
    # Tabatabai, DAMOS interleave v4: 72 GB/s DDR + 26 GB/s CXL, taken as reads only.
    "amd-ddr5-72gbs": ("bytedance-ddr5-snc", 72.0, None),
    "cxl-26gbs": ("bytedance-cxl-asic", 26.0, None),
    # UPI-bound Skylake remote read peak 35.2 GB/s x 11.2/10.4 GT/s; idle = 90 + 55 ns.
    "icelake-ddr4-remote-socket": ("bytedance-ddr5-remote-socket", 35.2 * 11.2 / 10.4, 145.0),
}


@pytest.mark.parametrize("name", sorted(SCALED_SETUPS))
def test_setup_profile_is_its_base_scaled(name: str) -> None:
    base_name, factor, idle = SCALED_SETUPS[name]
    profile, base = load_profile(name), load_profile(base_name)
    assert profile.kind == base.kind
    expected_idle = base.idle_latency_ns if idle is None else idle
    assert profile.idle_latency_ns == pytest.approx(expected_idle, abs=1e-3)
    for r in COMPARE_MIXES:
        assert float(profile.saturation_gbps(r)) == pytest.approx(
            factor * float(base.saturation_gbps(r)), rel=1e-4
        ), (name, r)
        # The latency curve keeps its shape in units of load.
        np.testing.assert_allclose(
            excess_by_load(profile, r, LOADS), excess_by_load(base, r, LOADS), rtol=1e-3
        )


@pytest.mark.parametrize("name", sorted(PEAK_SETUPS))
def test_setup_profile_holds_its_published_peak(name: str) -> None:
    base_name, peak, idle = PEAK_SETUPS[name]
    profile, base = load_profile(name), load_profile(base_name)
    assert profile.kind == base.kind
    assert read_peak(profile) == pytest.approx(peak, rel=1e-4)
    expected_idle = base.idle_latency_ns if idle is None else idle
    assert profile.idle_latency_ns == pytest.approx(expected_idle, abs=1e-3)
    # Every mix scales alike: the shape source's mix dependence and curve, in units of load.
    for r in COMPARE_MIXES:
        assert float(profile.saturation_gbps(r)) == pytest.approx(
            peak / read_peak(base) * float(base.saturation_gbps(r)), rel=1e-4
        ), (name, r)
        np.testing.assert_allclose(
            excess_by_load(profile, r, LOADS), excess_by_load(base, r, LOADS), rtol=1e-3
        )


def test_published_setup_anchors() -> None:
    """The numbers each setup's source published, as the shipped profiles hold them."""
    xeon6 = load_profile("xeon6-ddr5-6400-12ch")
    assert read_peak(xeon6) == pytest.approx(494.4, abs=0.1)
    one, eight = load_profile("micron-cz122-x8"), load_profile("micron-cz122-x8-8dev")
    assert eight.idle_latency_ns == one.idle_latency_ns
    # The nearest published per-device figure: Micron CZ120 x8, up to 36 GB/s at MLC 2:1.
    assert float(one.saturation_gbps(0.75)) == pytest.approx(36.0, rel=0.02)
    assert float(eight.saturation_gbps(0.75)) == pytest.approx(8 * 35.4, abs=0.1)
    local, remote = load_profile("icelake-ddr4-socket"), load_profile("icelake-ddr4-remote-socket")
    assert remote.idle_latency_ns - local.idle_latency_ns == pytest.approx(55.0)
    # A whole socket's remote reads are UPI-bound: far below the local socket.
    assert read_peak(remote) < 0.25 * read_peak(local)


def test_meta_like_cxl_is_half_the_ddr_and_80ns_slower() -> None:
    meta, ddr = load_profile("meta-like-cxl"), load_profile("bytedance-ddr5-snc")
    asic = load_profile("bytedance-cxl-asic")
    assert meta.kind == "cxl"
    assert meta.idle_latency_ns - ddr.idle_latency_ns == pytest.approx(80.0, abs=1e-3)
    for r in COMPARE_MIXES:
        ratio = float(meta.saturation_gbps(r)) / float(ddr.saturation_gbps(r))
        assert ratio == pytest.approx(0.5, rel=1e-4), r
        # The curve is the ASIC expander's, in units of load.
        np.testing.assert_allclose(
            excess_by_load(meta, r, LOADS), excess_by_load(asic, r, LOADS), rtol=1e-3
        )
    # "Steeper latency vs bandwidth curve": more excess latency than the DDR at equal load.
    for r in (1.0, 0.75):
        busy = np.array([0.5, 0.8, 0.9])
        assert np.all(excess_by_load(meta, r, busy) > excess_by_load(ddr, r, busy)), r


SETUP_PAIRS = [
    ("bytedance-ddr5-snc", "meta-like-cxl"),
    ("xeon6-ddr5-6400-12ch", "micron-cz122-x8"),
    ("xeon6-ddr5-6400-12ch", "micron-cz122-x8-8dev"),
    ("amd-ddr5-72gbs", "cxl-26gbs"),
    ("icelake-ddr4-socket", "icelake-ddr4-remote-socket"),
]


@pytest.mark.parametrize(("ddr", "slow"), SETUP_PAIRS)
def test_the_solver_runs_on_each_published_setup(ddr: str, slow: str) -> None:
    """Every new profile loads and the solver settles on it, idle to saturated, all mixes."""
    nodes = NodeSet([load_profile(ddr), load_profile(slow)])
    shares = np.linspace(0.0, 1.0, 11)  # share of accesses on the slow node
    split = np.stack([1 - shares, shares], axis=-1)[:, None, :]
    for mlp in (16.0, 512.0, 16384.0):
        for reads in (1.0, 0.75, 0.5):
            mlp_ = np.full((shares.size, 1), mlp)
            think = np.full((shares.size, 1), 10.0)
            read = np.full((shares.size, 1), reads)
            solution = solve(nodes, mlp_, think, read, split)
            assert np.all(solution.converged), (ddr, slow, mlp, reads)
            x = solution.throughput_gbps[:, 0]
            assert np.all(np.isfinite(x)) and np.all(x > 0)
            # Little's law for the stream, and no node above its capacity.
            np.testing.assert_allclose(
                x, mlp * 64 / (10.0 + solution.stream_latency_ns[:, 0]), rtol=1e-6
            )
            assert np.all(
                solution.node_bandwidth_gbps <= solution.node_saturation_gbps * (1 + 1e-6)
            )


# --- Saving, loading, scaling -----------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_save_and_load_round_trip(tmp_path: Path, name: str) -> None:
    profile = load_profile(name)
    path = tmp_path / f"{name}.toml"
    profile.save(path)
    again = load_profile_file(path)
    assert (again.name, again.kind, again.description) == (
        profile.name,
        profile.kind,
        profile.description,
    )
    assert again.provenance == profile.provenance
    assert type(again.latency) is type(profile.latency)
    assert again.idle_latency_ns == pytest.approx(profile.idle_latency_ns, rel=1e-6)
    assert_same_model(again, profile, rtol=1e-4)
    # A path works wherever a name does.
    assert_same_model(load_profile(str(path)), profile, rtol=1e-4)


@needs_mlc
def test_piecewise_profile_round_trips(tmp_path: Path) -> None:
    # The socket-local device only (d0): the d3 logs are the same device seen from the other
    # socket, a different node.
    curves = [c for path in sorted(MLC_DIR.glob("cxl_log_d0_*")) for c in read_measurements(path)]
    profile = fit_profile(curves, name="cxl-piecewise", kind="cxl", form="piecewise").profile
    assert isinstance(profile.latency, PiecewiseCurve)
    assert profile.latency.read_fraction.size == 4
    path = tmp_path / "cxl-piecewise.toml"
    profile.save(path)
    again = load_profile_file(path)
    assert isinstance(again.latency, PiecewiseCurve)
    np.testing.assert_allclose(
        again.latency.read_fraction, profile.latency.read_fraction, atol=1e-6
    )
    assert_same_model(again, profile, rtol=1e-4)
    # The piecewise curve passes close to the measured points it was built from.
    rising = curves[0].rising_branch()
    model = again.latency_ns(rising.bandwidth_gbps[1:-1], curves[0].read_fraction)
    assert np.median(np.abs(model / rising.latency_ns[1:-1] - 1)) < 0.02


@pytest.mark.parametrize(
    ("name", "factor"), [("spr-8460y-ddr5-socket", 0.5), ("bytedance-cxl-asic", 2.0)]
)
def test_scaled_scales_capacity_and_keeps_latency_versus_load(name: str, factor: float) -> None:
    profile = load_profile(name)
    scaled = profile.scaled(factor)
    assert scaled.name == f"{name}*{factor:g}"
    assert profile.scaled(factor, name="half").name == "half"
    assert scaled.idle_latency_ns == profile.idle_latency_ns
    for r in COMPARE_MIXES:
        assert float(scaled.saturation_gbps(r)) == pytest.approx(
            factor * float(profile.saturation_gbps(r)), rel=1e-12
        )
        grid = load_grid(profile, r)
        np.testing.assert_allclose(
            scaled.latency_ns(factor * grid, r), profile.latency_ns(grid, r), rtol=1e-12
        )
        latency = profile.latency_ns(grid[1:], r)
        np.testing.assert_allclose(scaled.served_gbps(latency, r), factor * grid[1:], rtol=1e-7)


@pytest.mark.parametrize("factor", [0.0, -1.0, math.nan, math.inf])
def test_scaled_rejects_non_positive_factors(factor: float) -> None:
    with pytest.raises(ValueError, match="bandwidth_factor"):
        load_profile("generic-cxl-x8").scaled(factor)


# --- Bad profiles -----------------------------------------------------------------------------

VALID: dict[str, Any] = {
    "name": "test-node",
    "kind": "cxl",
    "description": "a hand-written CXL node",
    "idle_latency_ns": 250.0,
    "bandwidth": {
        "media_gbps": 54.0,
        "write_penalty": 0.0,
        "read_link_gbps": 48.0,
        "write_link_gbps": 47.0,
    },
    "latency": {
        "form": "parametric",
        "mixes": [
            {"read_fraction": 0.75, "a_ns": 300.0, "exponent": 0.4, "headroom": 1.07},
            {"read_fraction": 1.0, "a_ns": 40.0, "exponent": 0.5, "headroom": 1.03},
        ],
    },
    "provenance": {"source": "made up for a test"},
}

PIECEWISE = {
    "form": "piecewise",
    "mixes": [
        {
            "read_fraction": 1.0,
            "bandwidth_gbps": [10.0, 30.0, 45.0],
            "latency_ns": [260.0, 300.0, 400.0],
        }
    ],
}


def with_piecewise(**mix: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    data["latency"] = copy.deepcopy(PIECEWISE)
    data["latency"]["mixes"][0].update(mix)
    return data


def edited(path: str, value: Any) -> dict[str, Any]:
    """VALID with one dotted-path entry replaced (value ``...`` deletes it)."""
    data = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    table = data
    for key in parents:
        table = table[int(key)] if key.isdigit() else table[key]
    if value is ...:
        del table[last]
    else:
        table[last] = value
    return data


# case -> (profile data, field named in the message, problem pattern)
BAD_PROFILES: dict[str, tuple[dict[str, Any], str, str]] = {
    "negative_idle": (edited("idle_latency_ns", -5.0), "idle_latency_ns", "negative"),
    "zero_idle": (edited("idle_latency_ns", 0.0), "idle_latency_ns", "positive"),
    "nan_idle": (edited("idle_latency_ns", math.nan), "idle_latency_ns", "number"),
    "text_idle": (edited("idle_latency_ns", "fast"), "idle_latency_ns", "number"),
    "missing_name": (edited("name", ...), "name", "missing"),
    "unknown_kind": (edited("kind", "nvme"), "kind", "'nvme'"),
    "missing_bandwidth": (edited("bandwidth", ...), "bandwidth", "missing table"),
    "missing_media": (edited("bandwidth.media_gbps", ...), "bandwidth.media_gbps", "missing"),
    "negative_media": (edited("bandwidth.media_gbps", -54.0), "bandwidth.media_gbps", "negative"),
    "zero_media": (edited("bandwidth.media_gbps", 0.0), "bandwidth", "media_gbps"),
    "inf_link": (
        edited("bandwidth.read_link_gbps", math.inf),
        "bandwidth.read_link_gbps",
        "number",
    ),
    "write_penalty_2": (edited("bandwidth.write_penalty", 2.0), "bandwidth", "write_penalty"),
    "write_penalty_5": (edited("bandwidth.write_penalty", 5.0), "bandwidth", "write_penalty"),
    "missing_mixes": (edited("latency.mixes", ...), "latency.mixes", "missing"),
    "empty_mixes": (edited("latency.mixes", []), "latency.mixes", "empty"),
    "unknown_form": (edited("latency.form", "spline"), "latency.form", "'spline'"),
    "negative_exponent": (
        edited("latency.mixes.0.exponent", -0.4),
        "latency.mixes[0].exponent",
        "negative",
    ),
    "zero_a": (edited("latency.mixes.1.a_ns", 0.0), "latency", "a_ns must be positive"),
    "missing_headroom": (
        edited("latency.mixes.1.headroom", ...),
        "latency.mixes[1].headroom",
        "missing",
    ),
    "read_fraction_above_1": (edited("latency.mixes.1.read_fraction", 1.5), "latency", r"\[0, 1\]"),
    "duplicate_mix": (edited("latency.mixes.1.read_fraction", 0.75), "latency", "distinct"),
    "piecewise_latency_decreases": (
        with_piecewise(latency_ns=[260.0, 320.0, 300.0]),
        "latency",
        "non-decreasing latency",
    ),
    "piecewise_bandwidth_not_increasing": (
        with_piecewise(bandwidth_gbps=[10.0, 30.0, 20.0]),
        "latency",
        "increasing bandwidth",
    ),
    "piecewise_lengths_differ": (
        with_piecewise(latency_ns=[260.0, 300.0]),
        "latency.mixes[0].latency_ns",
        "as many entries",
    ),
    "piecewise_below_idle": (
        with_piecewise(latency_ns=[240.0, 300.0, 400.0]),
        "latency",
        "idle",
    ),
    "piecewise_negative_bandwidth": (
        with_piecewise(bandwidth_gbps=[10.0, -30.0, 45.0]),
        "latency.mixes[0].bandwidth_gbps[1]",
        "negative",
    ),
    "piecewise_text_latency": (
        with_piecewise(latency_ns=[260.0, "slow", 400.0]),
        "latency.mixes[0].latency_ns[1]",
        "number",
    ),
    "piecewise_missing_list": (
        with_piecewise(bandwidth_gbps=[]),
        "latency.mixes[0].bandwidth_gbps",
        "missing or empty",
    ),
}


def write_profile(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.mark.parametrize("data", [VALID, with_piecewise()], ids=["parametric", "piecewise"])
def test_the_unedited_profile_loads(tmp_path: Path, data: dict[str, Any]) -> None:
    """The bad cases below differ from a valid file in one entry only."""
    profile = load_profile_file(write_profile(tmp_path, "good", data))
    assert profile.name == "test-node"
    assert float(profile.saturation_gbps(1.0)) == pytest.approx(48.0)
    assert float(profile.latency_ns(0.0, 1.0)) == 250.0


@pytest.mark.parametrize("case", sorted(BAD_PROFILES))
def test_bad_profile_names_file_and_field(tmp_path: Path, case: str) -> None:
    data, field, problem = BAD_PROFILES[case]
    path = write_profile(tmp_path, f"bad_{case}", data)
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: field '{field}': "), message
    assert re.search(problem, message), message
    # load_profile takes a path as well and must fail the same way.
    with pytest.raises(ProfileError, match=re.escape(str(path))):
        load_profile(str(path))


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\nidle_latency_ns = \n')
    with pytest.raises(ProfileError, match=rf"^{re.escape(str(path))}: not valid TOML"):
        load_profile_file(path)


def test_missing_profile_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ProfileError, match=rf"^{re.escape(str(path))}: cannot read"):
        load_profile(str(path))


def test_unknown_profile_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("no-such-node")
    message = str(info.value)
    assert "'no-such-node'" in message
    for name in SHIPPED:
        assert name in message
    assert not (shipped_profile_dir() / "no-such-node.toml").exists()


# Issue 19 item 10: an unknown key was accepted (a typo silently fell back to a default).
# case -> (profile data, field named in the message)
UNKNOWN_KEYS: dict[str, tuple[dict[str, Any], str]] = {
    "top": (edited("idle_latency_us", 0.25), "idle_latency_us"),
    "bandwidth": (edited("bandwidth.media_gpbs", 54.0), "bandwidth.media_gpbs"),
    "latency": (edited("latency.shape", "convex"), "latency.shape"),
    "parametric_mix": (edited("latency.mixes.1.exponnet", 0.5), "latency.mixes[1].exponnet"),
    "piecewise_mix": (with_piecewise(a_ns=30.0), "latency.mixes[0].a_ns"),
}


@pytest.mark.parametrize("case", sorted(UNKNOWN_KEYS))
def test_an_unknown_key_is_refused_with_file_line_and_key(tmp_path: Path, case: str) -> None:
    data, field = UNKNOWN_KEYS[case]
    path = write_profile(tmp_path, f"unknown_{case}", data)
    key = field.rsplit(".", 1)[-1]
    lines = path.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if re.search(rf"\b{key} =", text))
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: field '{field}': unknown field at line {line} "), message
    # Without the file's text (a parsed mapping) there is no line, but still the key.
    with pytest.raises(ProfileError, match=rf"^<p>: field '{re.escape(field)}': unknown field \("):
        profile_from_dict(data, "<p>")


def test_an_unknown_key_in_an_array_of_tables_has_its_line(tmp_path: Path) -> None:
    path = tmp_path / "arrays.toml"
    lines = tomli_w.dumps({k: v for k, v in VALID.items() if k != "latency"}).splitlines()
    lines += ["[latency]", 'form = "parametric"', "[[latency.mixes]]"]
    lines += ["read_fraction = 1.0", "a_ns = 40.0", "exponent = 0.5", "headroom = 1.03"]
    lines += ["[[latency.mixes]]", "read_fraction = 0.75", "a_ns = 300.0", "exponent = 0.4"]
    lines += ["headroom = 1.07", "'knee' = 0.9"]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    assert str(info.value).startswith(
        f"{path}: field 'latency.mixes[1].knee': unknown field at line {len(lines)} "
    )


def test_a_binary_profile_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b'name = "x"\n\xff\xfe\x00')
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    assert str(info.value) == (
        f"{path}: not a UTF-8 text file (byte 0xff at offset 11); expected a TOML node profile"
    )


def test_the_line_of_an_unknown_key_after_a_multiline_array(tmp_path: Path) -> None:
    """Array items on their own lines ("[10.0],") are not table headers."""
    path = tmp_path / "multiline.toml"
    lines = tomli_w.dumps({k: v for k, v in VALID.items() if k != "latency"}).splitlines()
    lines += ["[latency]", 'form = "piecewise"', "[[latency.mixes]]", "read_fraction = 1.0"]
    lines += ["bandwidth_gbps = [", "  10.0,", "]", "latency_ns = [", "  [260.0],", "]"]
    lines += ["knee = 1"]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    assert str(info.value).startswith(
        f"{path}: field 'latency.mixes[0].knee': unknown field at line {len(lines)} "
    )
