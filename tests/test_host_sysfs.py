"""The real-host sysfs layer against the fake kernel tree (never the real /sys)."""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tierenv.damon.config import Dest, Scheme
from tierenv.host.collector import HostMetrics
from tierenv.host.config import load_host_config
from tierenv.host.damon import KDAMONDS, Kdamond, KdamondError, probe
from tierenv.host.fake_kernel import FakeKernel
from tierenv.host.interleave import WI_DIR, InterleaveWriteError, WeightedInterleave
from tierenv.host.simulated_kernel import SimulatedKernel
from tierenv.host.sysfs import ALLOW_ENV, RealFiles, RealSysfsRefusedError, SysfsError, SysfsRoot
from tierenv.sim.damos_setup import DamosSetup

K0 = f"{KDAMONDS}/0"
S0 = f"{K0}/contexts/0/schemes/0"


def context(pid: int = 4242, weights: tuple[int, ...] = (3, 1)):
    return DamosSetup().context(pid, list(weights))


# --- safety -----------------------------------------------------------------------------------


def test_conftest_fixture_is_active(request: pytest.FixtureRequest) -> None:
    assert "_no_real_sysfs" in request.fixturenames
    assert ALLOW_ENV not in os.environ


@pytest.mark.parametrize("path", ["/sys", "/sys/kernel/mm", "/proc", "/sys/../sys"])
def test_real_sysfs_is_refused(path: str) -> None:
    with pytest.raises(RealSysfsRefusedError, match=ALLOW_ENV):
        SysfsRoot(path)


def test_symlink_to_sys_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "sys"
    link.symlink_to("/sys")
    with pytest.raises(RealSysfsRefusedError):
        SysfsRoot(link)
    with pytest.raises(RealSysfsRefusedError):  # the file layer guards writes too
        RealFiles().write_text(link / "kernel/mm/nothing", "1")


def test_opt_in_allows_constructing_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "1")
    assert SysfsRoot("/sys").path == Path("/sys")  # no I/O happens on construction


def test_paths_cannot_escape_the_root(tmp_path: Path) -> None:
    root = SysfsRoot(tmp_path)
    for rel in ("../x", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError, match="relative"):
            root.write(rel, 1)


# --- weighted interleave ----------------------------------------------------------------------


@pytest.mark.parametrize(("kernel", "auto_name"), [("6.18", "__auto_type"), ("7.3", "auto")])
def test_weights_and_auto_switch(tmp_path: Path, kernel: str, auto_name: str) -> None:
    fake = FakeKernel(tmp_path, n_nodes=3, kernel=kernel)
    wi = WeightedInterleave(fake.root)
    assert wi.nodes() == [0, 1, 2]
    assert wi.auto_name() == auto_name
    original = wi.snapshot()
    assert original.weights == {0: 1, 1: 1, 2: 1} and original.auto is True
    assert wi.write_weights({0: 5, 1: 2, 2: 1}) == original
    assert wi.snapshot().weights == {0: 5, 1: 2, 2: 1}
    assert wi.read_auto() is False  # the node write switched to manual (kernel rule)
    assert all(path != f"{WI_DIR}/{auto_name}" for path, _ in fake.writes)


def test_no_auto_switch_before_6_16(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path, kernel="6.12")
    wi = WeightedInterleave(fake.root)
    assert wi.auto_name() is None and wi.read_auto() is None
    wi.write_weights([2, 1])
    assert wi.snapshot().weights == {0: 2, 1: 1} and wi.snapshot().auto is None


def test_restore_reenables_auto_mode(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path, kernel="7.3", auto_weights=[21, 10])
    wi = WeightedInterleave(fake.root)
    fake.root.write(f"{WI_DIR}/auto", "true")
    original = wi.write_weights([3, 1])
    wi.restore(original)
    assert wi.snapshot() == original
    assert wi.read_auto() is True


def test_weights_are_checked_before_writing(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    wi = WeightedInterleave(fake.root)
    for bad in ([0, 1], [256, 1], [1, 1, 1], {0: 1, 5: 1}):
        with pytest.raises((ValueError, InterleaveWriteError)):
            wi.write_weights(bad)
    assert not fake.writes


def test_fake_validates_weight_files(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    for value, code in (("0", errno.EINVAL), ("256", errno.EINVAL), ("x", errno.EINVAL)):
        with pytest.raises(SysfsError) as info:
            fake.root.write(f"{WI_DIR}/node0", value)
        assert info.value.errno == code
    with pytest.raises(SysfsError) as info:
        fake.root.write(f"{WI_DIR}/node7", "1")
    assert info.value.errno == errno.ENOENT and "node7" in str(info.value)
    with pytest.raises(SysfsError) as info:
        fake.root.write(f"{WI_DIR}/__auto_type", "true")  # no bandwidth data
    assert info.value.errno == errno.ENODEV


def test_transaction_restores_first_node_on_failure(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    wi = WeightedInterleave(fake.root)
    wi.write_weights([4, 2])
    fake.writes.clear()
    fake.fail_write(1, errno.EINVAL, path=f"{WI_DIR}/node1")
    with pytest.raises(InterleaveWriteError) as info:
        wi.write_weights([9, 7])
    message = str(info.value)
    assert f"{WI_DIR}/node1" in message and "'7'" in message and "EINVAL" in message
    assert "refused the value" in message
    assert info.value.restored
    assert isinstance(info.value.__cause__, SysfsError)
    assert wi.read_weights() == {0: 4, 1: 2}
    assert fake.writes == [(f"{WI_DIR}/node0", "9"), (f"{WI_DIR}/node0", "4")]


def test_transaction_reports_a_failed_restore(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    wi = WeightedInterleave(fake.root)
    fake.fail_write(2, errno.EINVAL)  # node1
    fake.fail_write(2, errno.EACCES, path=f"{WI_DIR}/node0")  # the restore of node0
    with pytest.raises(InterleaveWriteError, match="Restoring the original weights failed") as info:
        wi.write_weights([9, 7])
    assert not info.value.restored and "node0" in str(info.value)


# --- DAMON: our kdamond -----------------------------------------------------------------------


def _index(writes: list[tuple[str, str]], path: str, value: str | None = None) -> int:
    for i, (p, v) in enumerate(writes):
        if p == path and (value is None or v == value):
            return i
    raise AssertionError(f"{path}={value} was not written")


def test_build_start_commit_stop_in_documented_order(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path, pids={4242})
    kd = Kdamond.create(fake.root)
    assert kd.index == 0 and kd.created
    kd.stage(context(), refresh_ms=1000)
    kd.start()
    assert kd.is_on() and kd.pid() > 0
    w = fake.writes
    at = lambda rel, value=None: _index(w, rel, value)  # noqa: E731
    c = f"{K0}/contexts/0"
    # damo's order (_damon_sysfs.py): counts before children; refresh_ms, ops, attrs,
    # addr_unit, targets, schemes.
    assert at(f"{KDAMONDS}/nr_kdamonds", "1") == 0
    order = [
        at(f"{K0}/refresh_ms", "1000"),
        at(f"{K0}/contexts/nr_contexts", "1"),
        at(f"{c}/operations", "vaddr"),
        at(f"{c}/monitoring_attrs/intervals/sample_us", "5000"),
        at(f"{c}/monitoring_attrs/nr_regions/max", "1000"),
        at(f"{c}/addr_unit", "1"),
        at(f"{c}/targets/nr_targets", "1"),
        at(f"{c}/targets/0/pid_target", "4242"),
        at(f"{c}/schemes/nr_schemes", "1"),
        at(f"{S0}/access_pattern/sz/min"),
        at(f"{S0}/access_pattern/age/max"),
        at(f"{S0}/action", "migrate_hot"),
        at(f"{S0}/dests/nr_dests", "2"),
        at(f"{S0}/dests/0/id", "0"),
        at(f"{S0}/dests/0/weight", "3"),
        at(f"{S0}/dests/1/weight", "1"),
        at(f"{S0}/quotas/ms"),
        at(f"{S0}/quotas/bytes", "209715200"),
        at(f"{S0}/quotas/reset_interval_ms", "1000"),
        at(f"{S0}/watermarks/metric", "none"),
        at(f"{S0}/target_nid", "-1"),
        at(f"{S0}/core_filters/nr_filters", "0"),
        at(f"{S0}/apply_interval_us", "1000000"),
        at(f"{K0}/state", "on"),
    ]
    assert order == sorted(order)
    assert w[-1] == (f"{K0}/state", "on")
    # Every access-pattern bound is written explicitly (the defaults, 0, match nothing).
    written = dict(w)
    assert written[f"{S0}/access_pattern/nr_accesses/min"] == "1"  # 5 % of 20 samples
    assert written[f"{S0}/access_pattern/nr_accesses/max"] == "20"
    assert written[f"{S0}/access_pattern/sz/max"] == str(2**64 - 1)
    assert written[f"{S0}/access_pattern/age/max"] == str(2**32 - 1)
    assert written[f"{S0}/access_pattern/age/min"] == "0"

    # New weights online: dest files, then commit; nr_dests untouched when the count is equal.
    w.clear()
    kd.set_dests([5, 2])
    assert w == [
        (f"{S0}/dests/0/id", "0"),
        (f"{S0}/dests/0/weight", "5"),
        (f"{S0}/dests/1/id", "1"),
        (f"{S0}/dests/1/weight", "2"),
        (f"{K0}/state", "commit"),
    ]
    assert kd.read_dests() == [Dest(0, 5), Dest(1, 2)]

    w.clear()
    kd.remove()
    assert w == [(f"{K0}/state", "off"), (f"{KDAMONDS}/nr_kdamonds", "0")]
    assert fake.root.read_int(f"{KDAMONDS}/nr_kdamonds") == 0


def test_refused_commit_puts_dest_files_back(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    kd = Kdamond.create(fake.root)
    kd.stage(context())
    kd.start()
    fake.fail_write(1, errno.EINVAL, path=f"{K0}/state")
    with pytest.raises(KdamondError, match="kernel keeps running"):
        kd.set_dests([7, 1])
    assert kd.read_dests() == [Dest(0, 3), Dest(1, 1)]


def test_dest_nodes_without_memory_are_refused(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    kd = Kdamond.create(fake.root)
    with pytest.raises(KdamondError, match="no memory"):
        kd.stage(context(weights=(1, 1, 1)))


def test_invalid_config_is_einval_at_on(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path, pids={1})
    kd = Kdamond.create(fake.root)
    kd.stage(context(pid=4242))  # no such process
    with pytest.raises(SysfsError) as info:
        kd.start()
    assert info.value.errno == errno.EINVAL and "state" in str(info.value)
    assert "no process" in (fake.last_error or "")


def test_ebusy_points_at_damon_stat(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path, busy=True)
    kd = Kdamond.create(fake.root)
    kd.stage(context())
    with pytest.raises(SysfsError) as info:
        kd.start()
    assert info.value.errno == errno.EBUSY
    assert "DAMON_STAT" in str(info.value) and "'on'" in str(info.value)
    kd.remove()
    assert fake.root.read_int(f"{KDAMONDS}/nr_kdamonds") == 0


@pytest.mark.parametrize("running", [True, False])
def test_never_touches_a_foreign_kdamond(tmp_path: Path, running: bool) -> None:
    fake = FakeKernel(tmp_path)
    fake.add_foreign_kdamond(running=running)
    before = fake.snapshot(KDAMONDS)
    with pytest.raises(KdamondError, match="--reuse-kdamond INDEX"):
        Kdamond.create(fake.root)
    assert fake.snapshot(KDAMONDS) == before and not fake.writes
    if running:
        with pytest.raises(KdamondError, match="running"):
            Kdamond.create(fake.root, reuse_idle=0)
        assert fake.snapshot(KDAMONDS) == before


def test_fake_refuses_nr_kdamonds_while_one_runs(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    fake.add_foreign_kdamond(running=True)
    with pytest.raises(SysfsError) as info:
        fake.root.write(f"{KDAMONDS}/nr_kdamonds", 2)
    assert info.value.errno == errno.EBUSY


def test_adds_after_empty_idle_kdamonds_and_removes_only_ours(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    fake.add_foreign_kdamond(running=False, configured=False)
    kd = Kdamond.create(fake.root)
    assert kd.index == 1
    kd.stage(context())
    kd.start()
    kd.remove()
    assert fake.root.read_int(f"{KDAMONDS}/nr_kdamonds") == 1


def test_reuse_idle_clears_only_our_context(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    fake.add_foreign_kdamond(running=False)
    kd = Kdamond.create(fake.root, reuse_idle=0)
    assert not kd.created
    kd.stage(context())
    assert fake.root.read(f"{K0}/contexts/0/operations") == "vaddr"
    kd.remove()
    assert fake.root.read_int(f"{KDAMONDS}/nr_kdamonds") == 1
    assert fake.root.read_int(f"{K0}/contexts/nr_contexts") == 0


def test_nr_files_recreate_children_with_defaults(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    kd = Kdamond.create(fake.root)
    kd.stage(context())
    fake.root.write(f"{K0}/contexts/0/schemes/nr_schemes", 1)
    assert fake.root.read(f"{S0}/action") == "stat"
    assert fake.root.read_int(f"{S0}/access_pattern/sz/max") == 0
    assert fake.root.read_int(f"{S0}/dests/nr_dests") == 0


def test_fake_file_checks(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path)
    Kdamond.create(fake.root).stage(context())
    cases = [
        (f"{K0}/pid", "5", errno.EACCES),
        (f"{S0}/stats/nr_tried", "0", errno.EACCES),
        (f"{S0}/action", "teleport", errno.EINVAL),
        (f"{S0}/quotas/bytes", "-1", errno.EINVAL),
        (f"{S0}/dests/nr_dests", "-1", errno.EINVAL),
        (f"{K0}/state", "commit", errno.EINVAL),  # not running
        (f"{K0}/state", "dance", errno.EINVAL),
        (f"{S0}/no_such_file", "1", errno.ENOENT),
    ]
    for rel, value, code in cases:
        with pytest.raises(SysfsError) as info:
            fake.root.write(rel, value)
        assert info.value.errno == code, rel
        assert rel in str(info.value) and repr(value) in str(info.value)
    fake.root.write(f"{S0}/quotas/bytes", "0x1000")
    assert fake.root.read_int(f"{S0}/quotas/bytes") == 4096


# --- probing ----------------------------------------------------------------------------------


def test_probe_full_kernel(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path, kernel="6.18")
    features = probe(fake.root)
    assert features.weighted_interleave and features.auto_file == "__auto_type"
    assert features.damon_sysfs and features.vaddr is None and features.dests is None
    assert "scratch=True" in features.missing["vaddr"]
    features = probe(fake.root, scratch=True)
    assert features.complete and features.missing == {}
    assert fake.root.read_int(f"{KDAMONDS}/nr_kdamonds") == 0  # the scratch kdamond is gone


def test_probe_6_8_like_tree(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path, kernel="6.8", avail_operations=("paddr",))
    fake.add_foreign_kdamond(running=True)
    before = fake.snapshot()
    features = probe(fake.root, scratch=True)  # read-only: another kdamond exists
    assert fake.snapshot() == before and not fake.writes
    assert not features.weighted_interleave and features.auto_file is None
    assert features.vaddr is False and features.dests is False and not features.complete
    assert "6.9" in features.missing["weighted_interleave"]
    assert "CONFIG_DAMON_VADDR" in features.missing["vaddr"]
    assert "6.17" in features.missing["dests"]


def test_probe_6_16_has_auto_but_no_dests(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path, kernel="6.16")
    features = probe(fake.root, scratch=True)
    assert features.auto_file == "auto" and features.vaddr is True and features.dests is False
    assert set(features.missing) == {"dests"}
    kd = Kdamond.create(fake.root)
    with pytest.raises(KdamondError, match=r"6\.17"):
        kd.stage(context())


def test_probe_without_auto_and_damon(tmp_path: Path) -> None:
    fake = FakeKernel(tmp_path, kernel="6.12")
    features = probe(fake.root)
    assert "6.16" in features.missing["auto"]
    for rel in sorted(fake.snapshot(KDAMONDS), reverse=True):
        (fake.path / rel).unlink()
    (fake.path / KDAMONDS).rmdir()
    features = probe(fake.root)
    assert not features.damon_sysfs and "CONFIG_DAMON_SYSFS" in features.missing["damon_sysfs"]
    assert "damon_sysfs" in features.explain()


# --- fake-tree behaviour checked against Linux 7.3.4 in the VM (tests/realkernel) -----------


def test_fake_boots_in_auto_mode_with_the_auto_weights(tmp_path: Path) -> None:
    fk = FakeKernel(tmp_path, kernel="7.3", auto_weights=[21, 10])
    assert WeightedInterleave(fk.root).read_weights() == {0: 21, 1: 10}
    assert WeightedInterleave(fk.root).read_auto() is True


@pytest.mark.parametrize(
    ("word", "auto"), [("t", True), ("on", True), ("nonsense", False), ("0", False)]
)
def test_fake_auto_switch_takes_what_kstrtobool_takes(tmp_path: Path, word: str, auto: bool):
    fk = FakeKernel(tmp_path, kernel="7.3", auto_weights=[21, 10])
    fk.root.write(f"{WI_DIR}/auto", "false")
    fk.root.write(f"{WI_DIR}/auto", word)
    assert WeightedInterleave(fk.root).read_auto() is auto
    with pytest.raises(SysfsError) as refused:
        fk.root.write(f"{WI_DIR}/auto", "maybe")
    assert refused.value.errno == errno.EINVAL


def test_fake_damon_numbers_read_back_in_decimal_and_overflow_is_erange(tmp_path: Path):
    fk = FakeKernel(tmp_path, kernel="7.3")
    kd = Kdamond.create(fk.root)
    kd.stage(context())
    quota = f"{KDAMONDS}/0/contexts/0/schemes/0/quotas/bytes"
    fk.root.write(quota, "0x1000")
    assert fk.root.read(quota) == "4096"
    for text, code in ((str(2**64), errno.ERANGE), ("-1", errno.EINVAL), ("x", errno.EINVAL)):
        with pytest.raises(SysfsError) as refused:
            fk.root.write(f"{KDAMONDS}/0/contexts/0/schemes/0/access_pattern/sz/max", text)
        assert refused.value.errno == code, text


def test_fake_stopped_kdamond_takes_off_and_cancels_commands(tmp_path: Path) -> None:
    fk = FakeKernel(tmp_path, kernel="7.3", pids={4242})
    kd = Kdamond.create(fk.root)
    state = f"{KDAMONDS}/0/state"
    kd.stage(context())
    for command in ("off", "commit", "update_schemes_stats"):  # never ran: all EINVAL
        with pytest.raises(SysfsError) as refused:
            fk.root.write(state, command)
        assert refused.value.errno == errno.EINVAL
    kd.start()
    kd.stop()
    fk.root.write(state, "off")  # ran and stopped: accepted
    for command in ("commit", "update_schemes_stats"):
        with pytest.raises(SysfsError) as refused:
            fk.root.write(state, command)
        assert refused.value.errno == errno.ECANCELED


def test_tried_regions_with_7_3_probes_directories_are_read(tmp_path: Path) -> None:
    """7.3.4 puts an empty probes/ directory in each tried region: reading must skip it."""
    kernel = SimulatedKernel(tmp_path / "host", "steady-single", seed=0, kernel="7.3")
    kernel.advance()
    kd = Kdamond.create(kernel.root)
    ctx = DamosSetup().context(4000, [1, 1])
    kd.stage(replace(ctx, schemes=(*ctx.schemes, Scheme(action="stat"))))
    kd.start()
    metrics = HostMetrics(
        kernel.root, kernel.proc_root, load_host_config(kernel.config_path), kernel.page_nodes()
    )
    metrics.attach_kdamond(kd, 1)
    m = metrics.measure()
    tried = kernel.path / f"{KDAMONDS}/0/contexts/0/schemes/1/tried_regions/0"
    assert (tried / "probes").is_dir() and (tried / "sz_filter_passed").is_file()
    regions = kernel.last.measurements.damon_regions["bw"]
    np.testing.assert_array_equal(m.damon_regions["bw"]["nr_accesses"], regions["nr_accesses"])
