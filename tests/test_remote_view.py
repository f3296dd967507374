"""Remote views: nodes measured from the other socket, their profiles, fit errors and solver."""

from __future__ import annotations

import inspect
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from scipy.integrate import quad

from tests.shared_data import MLC, needs_data, reference_root
from tierenv.hardware import solver_jit
from tierenv.hardware.curves import LINK_FIELDS, SocketLink
from tierenv.hardware.fit import fit_profile, report_curve
from tierenv.hardware.profile import (
    REMOTE_KINDS,
    NodeProfile,
    ProfileError,
    load_profile,
    load_profile_file,
    shipped_profile_dir,
    shipped_profile_names,
)
from tierenv.hardware.remote_view import (
    REMOTE_VIEW_RECIPES,
    build_remote_views,
    error_table,
    held_out_mixes,
    recipe_curves,
)
from tierenv.hardware.solver import LINE_BYTES, NodeSet, solve

SHARED = reference_root(MLC)  # the folder holding data/mlc: the repository or ../shared
needs_mlc = needs_data(MLC)
TOLERANCE = 0.05
REMOTE = ["bytedance-ddr5-remote-view", "bytedance-cxl-remote-view"]
LOCAL_OF = {
    "bytedance-ddr5-remote-view": "bytedance-ddr5-snc",
    "bytedance-cxl-remote-view": "bytedance-cxl-asic",
}


@pytest.fixture(scope="module")
def fits():
    return build_remote_views(SHARED)


@pytest.fixture(scope="module")
def held_out():
    return {(h.profile, Path(h.held_out.source).name): h for h in held_out_mixes(SHARED)}


# --- The recipes and the shipped files -------------------------------------------------------


def test_recipes_have_the_shape_of_the_shipped_builders_recipes() -> None:
    """(folder under data/, file pattern, fit_profile keywords), as shipped.MEASURED_RECIPES."""
    keywords = set(inspect.signature(fit_profile).parameters)
    assert [recipe["name"] for _, _, recipe in REMOTE_VIEW_RECIPES] == REMOTE
    for folder, pattern, recipe in REMOTE_VIEW_RECIPES:
        assert folder == "mlc/bytedance-eurosys24" and "*" in pattern
        assert set(recipe) <= keywords
        assert recipe["kind"] in REMOTE_KINDS and recipe["link"] is True
        assert recipe["description"] and {"source", "method"} <= set(recipe["provenance"])


@pytest.mark.parametrize("name", REMOTE)
def test_shipped_remote_view_is_a_remote_profile(name: str) -> None:
    assert name in shipped_profile_names()
    profile = load_profile(name)
    assert profile.kind in REMOTE_KINDS and profile.link is not None
    assert profile.provenance["source"] and profile.provenance["method"]
    local = load_profile(LOCAL_OF[name])
    # Seen from the other socket the same memory is slower at every load it serves.
    for r in (1.0, 0.75):
        grid = np.linspace(0.0, 0.9, 10) * float(profile.saturation_gbps(r))
        assert np.all(profile.latency_ns(grid, r) > local.latency_ns(grid, r))


@needs_mlc
def test_shipped_files_are_what_the_recipes_fit(fits) -> None:
    for fit in fits:
        shipped = load_profile(fit.profile.name)
        on_disk = load_profile_file(shipped_profile_dir() / f"{fit.profile.name}.toml")
        assert shipped.to_dict() == on_disk.to_dict()
        assert _agree(fit.profile.to_dict(), shipped.to_dict()), fit.profile.name


def _agree(new, old) -> bool:
    if isinstance(new, dict):
        return new.keys() == old.keys() and all(_agree(new[k], old[k]) for k in new)
    if isinstance(new, list):
        return len(new) == len(old) and all(_agree(a, b) for a, b in zip(new, old, strict=True))
    if isinstance(new, float):
        return math.isclose(new, old, rel_tol=1e-5, abs_tol=1e-9)
    return new == old


# --- Errors against the real logs ------------------------------------------------------------


@needs_mlc
def test_each_log_is_reproduced_within_5_percent(fits) -> None:
    """Measured when last changed (median / max): DDR5 -W0 0.87 / 3.1 %, -W2 0.48 / 7.8 %;
    CXL -W0 0.25 / 2.3 %, -W2 0.15 / 3.4 %."""
    for fit in fits:
        shipped = load_profile(fit.profile.name)
        assert len(fit.reports) == 2
        for report in fit.reports:
            assert report.median_abs_error <= TOLERANCE / 2, report.curve.source
            # The file (rounded to 6 digits) reproduces the log as well as the fit does.
            again = report_curve(shipped, report.curve)
            assert again.median_abs_error == pytest.approx(report.median_abs_error, abs=1e-4)
            assert again.max_abs_error <= 0.1


@needs_mlc
def test_the_fit_finds_the_links_terms(fits) -> None:
    ddr, cxl = (fit.profile for fit in fits)
    # DDR5: the steep early rise (131 -> 188 ns by 5 GB/s) is the link's; its mixes need no
    # write-share idle term once the rise follows the busier link direction.
    assert 50.0 < ddr.link.rise_ns < 100.0 and ddr.link.rise_gbps < 5.0
    assert ddr.link.write_idle_ns < 5.0
    # CXL: -W2's lightest row sits ~90 ns above -W0's: a write-share idle term.
    assert 200.0 < cxl.link.write_idle_ns < 400.0
    # Idle latencies near the lightest rows (MLC 20000-delay rows: 130.9 and 485.2 ns).
    assert 110.0 < ddr.idle_latency_ns < 131.0 and 470.0 < cxl.idle_latency_ns < 486.0


# Leave one mix out: fit a view on its other mix, predict the one left out. With two mixes
# this asks the model to extrapolate from one mix, which cannot show how the view depends on
# the write share. Measured when last changed (median / max absolute latency error):
#   DDR5  train -W0 -> -W2:  3.62 / 49.6 %   capacity at -W2 65.5 vs 42.9 GB/s (+53 %)
#   DDR5  train -W2 -> -W0:  5.30 / 70.5 %   capacity at -W0 46.4 vs 70.8 GB/s (-34 %)
#   CXL   train -W0 -> -W2: 16.79 / 24.5 %   capacity 20.3 vs 20.7 GB/s
#   CXL   train -W2 -> -W0: 20.65 / 23.7 %   capacity 20.7 vs 20.3 GB/s
# The early rise transfers (it follows the busier link direction); what one mix cannot give
# is the DDR write penalty of the capacity (one mix falls back to the local default 0.3) and
# the CXL write-share idle term (zero when one write share is seen). The bounds sit just
# above the measured figures: the CXL ones document a failure, not a goal.
HELD_OUT_BOUND = {
    ("bytedance-ddr5-remote-view", "ddr5_log_d7_c16_w2_r0"): 0.045,
    ("bytedance-ddr5-remote-view", "ddr5_log_d7_c16_w0_r0"): 0.06,
    ("bytedance-cxl-remote-view", "cxl_log_d3_c16_w2_r0"): 0.19,
    ("bytedance-cxl-remote-view", "cxl_log_d3_c16_w0_r0"): 0.23,
}


@needs_mlc
@pytest.mark.parametrize("key", sorted(HELD_OUT_BOUND), ids=lambda k: k[1])
def test_held_out_mix_errors_are_what_the_report_says(held_out, key) -> None:
    result = held_out[key]
    assert np.all(np.isfinite(result.report.model_latency_ns))
    assert result.report.median_abs_error <= HELD_OUT_BOUND[key], (
        f"{key[1]} held out: {100 * result.report.median_abs_error:.2f}%"
    )


@needs_mlc
def test_held_out_failures_come_from_the_write_share_terms(fits, held_out) -> None:
    """Give the one-mix profile what one mix cannot show (taken from the fit of both mixes)
    and the held-out error falls: DDR5 with the two-mix capacity to 2.7 / 3.1 %; CXL with the
    two-mix write-share idle term to 7.3 / 10.7 % (its -W2 memory curve is steeper too)."""
    joint = {fit.profile.name: fit.profile for fit in fits}
    for (name, log), result in held_out.items():
        folder, pattern, recipe = _recipe(name)
        training = [c for c in recipe_curves(SHARED, folder, pattern) if Path(c.source).name != log]
        one = fit_profile(training, **recipe).profile
        both = joint[name]
        if name.startswith("bytedance-ddr5"):
            helped = replace(one, bandwidth=both.bandwidth)
            bound = TOLERANCE
        else:
            w = both.link.write_idle_ns
            trained_share = min(1 - training[0].read_fraction, 0.5)
            helped = replace(
                one,
                idle_latency_ns=one.idle_latency_ns - w * trained_share,
                link=SocketLink(w, one.link.rise_ns, one.link.rise_gbps),
            )
            bound = 0.6 * result.report.median_abs_error
        error = report_curve(helped, result.held_out).median_abs_error
        assert error <= bound, (log, error)


def _recipe(name: str):
    return next(entry for entry in REMOTE_VIEW_RECIPES if entry[2]["name"] == name)


@needs_mlc
def test_error_table_lists_every_log_fitted_and_held_out(fits, held_out) -> None:
    table = error_table(fits, list(held_out.values()))
    for _, log in held_out:
        assert log in table
    assert table.count("\n") == 2 + 4


# --- The curve as the solver uses it ---------------------------------------------------------


@pytest.mark.parametrize("name", REMOTE)
@pytest.mark.parametrize("r", [1.0, 0.9, 0.75, 0.5, 0.0])
def test_served_load_is_the_inverse_of_the_latency_curve(name: str, r: float) -> None:
    profile = load_profile(name)
    capacity = float(profile.saturation_gbps(r))
    grid = np.linspace(0.0, 0.995, 60)[1:] * capacity
    latency = profile.latency_ns(grid, r)
    assert np.all(np.diff(latency) > 0)
    np.testing.assert_allclose(profile.served_gbps(latency, r), grid, rtol=1e-9)
    # With no traffic there is no mix: idle; with any, the mix's offset.
    assert float(profile.latency_ns(0.0, r)) == profile.idle_latency_ns
    offset = float(profile.link.offset_ns(r))
    assert float(profile.latency_ns(1e-9, r)) == pytest.approx(profile.idle_latency_ns + offset)
    # Below the offset the view serves nothing.
    if offset > 0:
        assert float(profile.served_gbps(profile.idle_latency_ns + 0.5 * offset, r)) == 0.0


@pytest.mark.parametrize("name", REMOTE)
@pytest.mark.parametrize("r", [1.0, 0.75, 0.3])
def test_slope_and_potential_are_the_derivative_and_integral(name: str, r: float) -> None:
    """What the solver's Newton steps use: dρ/dE and ∫ρ dE (by parts, closed form)."""
    profile = load_profile(name)
    offset = float(profile.link.offset_ns(r))

    def load(excess):
        values = np.atleast_1d(np.asarray(excess, float))
        return profile.load_at(values, np.full_like(values, r))

    grid = np.linspace(0.0, 3000.0, 3001)
    rho = load(grid)[0]
    assert np.all(np.diff(rho) >= 0) and rho[-1] <= 1.0
    # Below the offset the view serves nothing and is flat (from it on, the right-hand slope).
    assert np.all(rho[grid <= offset] == 0)
    below = grid[grid < offset]
    assert below.size == 0 or np.all(load(below)[1] == 0)
    for excess in offset + np.array([0.05, 1.0, 5.0, 20.0, 80.0, 300.0, 1500.0]):
        value, slope, integral = (float(v[0]) for v in load(excess))
        exact, _ = quad(lambda e: float(load(e)[0][0]), 0.0, excess, points=[offset], limit=400)
        assert integral == pytest.approx(exact, rel=1e-7, abs=1e-12), excess
        step = 1e-6 * excess
        central = (float(load(excess + step)[0][0]) - float(load(excess - step)[0][0])) / (2 * step)
        assert slope == pytest.approx(central, rel=1e-4, abs=1e-9), excess
        assert 0.0 <= value <= 1.0


def test_scaling_a_remote_view_keeps_its_curve_in_load_units() -> None:
    profile = load_profile("bytedance-cxl-remote-view")
    half = profile.scaled(0.5)
    assert half.link.rise_gbps == pytest.approx(0.5 * profile.link.rise_gbps)
    assert half.link.write_idle_ns == profile.link.write_idle_ns
    for r in (1.0, 0.75):
        grid = np.linspace(0.0, 0.95, 12) * float(profile.saturation_gbps(r))
        np.testing.assert_allclose(
            half.latency_ns(0.5 * grid, r), profile.latency_ns(grid, r), rtol=1e-12
        )


# --- The solver on remote views --------------------------------------------------------------

HOST = ["bytedance-ddr5-snc", "bytedance-ddr5-remote-view", "bytedance-cxl-asic"]
HOST += ["bytedance-cxl-remote-view"]


def random_streams(rng: np.random.Generator, batch: int, streams: int = 6):
    return (
        rng.uniform(1.0, 400.0, (batch, streams)),
        rng.uniform(0.0, 400.0, (batch, streams)),
        rng.uniform(0.5, 1.0, (batch, streams)),
        rng.dirichlet(np.ones(len(HOST)), (batch, streams)),
    )


@pytest.mark.parametrize("engine", ["numpy", "numba"] if solver_jit.AVAILABLE else ["numpy"])
def test_a_remote_view_drives_the_solver(engine: str) -> None:
    nodes = NodeSet([load_profile(name) for name in HOST])
    assert nodes.vectorised is not None  # the one-pass (and compiled) path takes remote views
    mlp, think, reads, split = random_streams(np.random.default_rng(3), 64)
    solution = solve(nodes, mlp, think, reads, split, engine=engine)
    assert np.all(solution.converged)
    assert np.all(solution.node_bandwidth_gbps <= solution.node_saturation_gbps * (1 + 1e-9))
    delay = think + np.einsum("kji,ki->kj", split, solution.node_latency_ns)
    np.testing.assert_allclose(solution.throughput_gbps, LINE_BYTES * mlp / delay, rtol=1e-9)
    # Each node serves at its solved latency what it carries (the profile's own inverse).
    for i, profile in enumerate(nodes.profiles):
        served = profile.served_gbps(
            solution.node_latency_ns[:, i], solution.node_read_fraction[:, i]
        )
        np.testing.assert_allclose(served, solution.node_bandwidth_gbps[:, i], rtol=1e-6, atol=1e-6)


def test_one_light_stream_sees_the_remote_views_mix_dependent_idle() -> None:
    profile = load_profile("bytedance-cxl-remote-view")
    nodes = NodeSet([profile])
    light = solve(nodes, [0.5], [2000.0], [0.75], [[1.0]])
    expected = profile.latency_ns(float(light.node_bandwidth_gbps[0]), 0.75)
    assert light.node_latency_ns[0] == pytest.approx(float(expected), rel=1e-9)
    # 2:1 traffic pays the write-share offset (+74 ns here) on top of the read-only idle.
    offset = float(profile.link.offset_ns(0.75))
    assert offset > 50.0
    assert light.node_latency_ns[0] > profile.idle_latency_ns + offset
    # A heavy stream saturates the view: Little's law sets its latency (MLC's 0-delay rows).
    heavy = solve(nodes, [600.0], [0.0], [1.0], [[1.0]])
    capacity = float(profile.saturation_gbps(1.0))
    assert heavy.node_bandwidth_gbps[0] == pytest.approx(capacity, rel=1e-6)
    assert heavy.node_latency_ns[0] == pytest.approx(LINE_BYTES * 600.0 / capacity, rel=1e-6)


@pytest.mark.skipif(not solver_jit.AVAILABLE, reason="numba is not installed")
def test_compiled_engine_matches_numpy_on_remote_views() -> None:
    nodes = NodeSet([load_profile(name) for name in HOST])
    rng = np.random.default_rng(11)
    mlp, think, reads, split = random_streams(rng, 48)
    background = rng.uniform(0.0, 4.0, (48, len(HOST)))
    kwargs = {"background_gbps": background, "background_read_fraction": 0.7}
    reference = solve(nodes, mlp, think, reads, split, engine="numpy", **kwargs)
    compiled = solve(nodes, mlp, think, reads, split, engine="numba", **kwargs)
    assert np.array_equal(compiled.converged, reference.converged)
    for field in ("throughput_gbps", "node_latency_ns", "node_bandwidth_gbps"):
        np.testing.assert_allclose(
            getattr(compiled, field), getattr(reference, field), rtol=1e-9, err_msg=field
        )


# --- Bad remote-view fields in a profile file ------------------------------------------------


def remote_data() -> dict:
    return load_profile("bytedance-cxl-remote-view").to_dict()


BAD_LINKS = {
    "not_a_table": (lambda d: d.update(link=3.0), "field 'link': must be a table"),
    "unknown_field": (
        lambda d: d["link"].update(rise_us=1.0),
        "field 'link.rise_us': unknown field",
    ),
    "missing_field": (lambda d: d["link"].pop("rise_ns"), "field 'link.rise_ns': missing"),
    "negative": (
        lambda d: d["link"].update(write_idle_ns=-1.0),
        "field 'link.write_idle_ns': must not be negative",
    ),
    "nan": (lambda d: d["link"].update(rise_ns=float("nan")), "field 'link.rise_ns': must be"),
    "boolean": (lambda d: d["link"].update(rise_ns=True), "field 'link.rise_ns': must be"),
    "text": (lambda d: d["link"].update(rise_gbps="4"), "field 'link.rise_gbps': must be"),
    "zero_scale": (
        lambda d: d["link"].update(rise_gbps=0.0),
        "field 'link.rise_gbps': must be positive",
    ),
    "local_kind": (lambda d: d.update(kind="cxl"), "field 'link': a socket link belongs to"),
    "piecewise": (
        lambda d: d["latency"].update(
            form="piecewise",
            mixes=[{"read_fraction": 1.0, "bandwidth_gbps": [5, 10], "latency_ns": [500, 600]}],
        ),
        "field 'link': a remote view needs latency.form = 'parametric'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_LINKS))
def test_bad_link_fields_name_the_file_and_field(tmp_path: Path, case: str) -> None:
    edit, message = BAD_LINKS[case]
    data = remote_data()
    edit(data)
    path = tmp_path / f"{case}.toml"
    path.write_text(tomli_w.dumps(data))
    with pytest.raises(ProfileError) as caught:
        load_profile_file(path)
    assert str(caught.value).startswith(f"{path}: "), caught.value
    assert message in str(caught.value), caught.value


def test_the_unedited_remote_view_round_trips(tmp_path: Path) -> None:
    for name in REMOTE:
        profile = load_profile(name)
        path = tmp_path / f"{name}.toml"
        profile.save(path)
        assert path.read_bytes() == (shipped_profile_dir() / f"{name}.toml").read_bytes()
        assert load_profile_file(path).to_dict() == profile.to_dict()
    assert set(LINK_FIELDS) == set(remote_data()["link"])


def test_a_link_needs_a_remote_kind_and_a_parametric_curve() -> None:
    profile = load_profile("bytedance-cxl-remote-view")
    with pytest.raises(ValueError, match="remote view"):
        replace(profile, kind="cxl")
    local = load_profile("bytedance-ddr5-snc")
    assert local.link is None and "link" not in local.to_dict()
    with pytest.raises(ValueError, match=r"link\.rise_gbps must be positive"):
        SocketLink(1.0, 1.0, 0.0)
    assert isinstance(replace(local, kind="remote-ddr"), NodeProfile)
