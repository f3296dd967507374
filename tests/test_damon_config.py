"""DAMON context configuration: the kernel's on/commit rejections, parsing and unit conversion."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import re
from typing import Any

import numpy as np
import pytest
import tomli_w

from tierenv.damon.config import (
    UINT_MAX,
    ULONG_MAX,
    AccessPattern,
    ContextConfig,
    DamonConfigError,
    DamosFilter,
    Dest,
    IntervalsGoal,
    MonitoringAttrs,
    QuotaGoal,
    Quotas,
    Range,
    Scheme,
    Target,
    Watermarks,
)

# The example of the module docstring / task: weighted migrate_hot on a vaddr target.
EXAMPLE: dict[str, Any] = {
    "operations": "vaddr",
    "addr_unit": 1,
    "monitoring_attrs": {
        "intervals": {
            "sample_us": 5000,
            "aggr_us": 100000,
            "update_us": 1000000,
            "intervals_goal": {
                "access_bp": 400,
                "aggrs": 3,
                "min_sample_us": 5000,
                "max_sample_us": 10000000,
            },
        },
        "nr_regions": {"min": 10, "max": 1000},
    },
    "targets": [{"pid": 0, "regions": [{"start": 0, "end": 4096}]}],
    "schemes": [
        {
            "action": "migrate_hot",
            "access_pattern": {
                "sz": {"min": 0, "max": "max"},
                "nr_accesses": {"min": 1, "max": 20},
                "age": {"min": 0, "max": "max"},
            },
            "apply_interval_us": 1000000,
            "quotas": {
                "ms": 0,
                "bytes": 209715200,
                "reset_interval_ms": 1000,
                "weights": {"sz_permil": 0, "nr_accesses_permil": 1000, "age_permil": 0},
                "goals": [
                    {
                        "target_metric": "node_mem_used_bp",
                        "target_value": 9000,
                        "current_value": 0,
                        "nid": 0,
                    }
                ],
            },
            "watermarks": {"metric": "none", "interval_us": 0, "high": 0, "mid": 0, "low": 0},
            "target_nid": -1,
            "dests": [{"id": 0, "weight": 3}, {"id": 1, "weight": 1}],
            "filters": [
                {
                    "type": "addr",
                    "matching": True,
                    "allow": False,
                    "addr_start": 0,
                    "addr_end": 4096,
                }
            ],
        }
    ],
}


def example() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE)


def rejects(data: dict[str, Any], path: str, problem: str, source: str = "<dict>") -> None:
    """from_dict refuses ``data`` with an error at ``path`` whose text matches ``problem``."""
    with pytest.raises(DamonConfigError) as info:
        ContextConfig.from_dict(data, source=source)
    assert info.value.path == path, str(info.value)
    assert re.search(problem, info.value.problem), str(info.value)


def migrate(**kwargs: Any) -> Scheme:
    return Scheme("migrate_hot", dests=(Dest(0, 1),), **kwargs)


# --- The example and round trips --------------------------------------------------------------


def test_example_parses_to_kernel_units() -> None:
    config = ContextConfig.from_dict(example())
    assert config.attrs.sample_us == 5000
    assert config.attrs.intervals_goal == IntervalsGoal(400, 3, 5000, 10_000_000)
    assert config.targets == (Target(0, ((0, 4096),)),)
    scheme = config.schemes[0]
    assert scheme.access_pattern == AccessPattern(
        Range(0, ULONG_MAX), Range(1, 20), Range(0, UINT_MAX)
    )
    assert scheme.quotas.bytes == 200 * 2**20
    assert scheme.quotas.nr_accesses_permil == 1000
    assert scheme.quotas.goals == (QuotaGoal("node_mem_used_bp", 9000, 0, 0),)
    assert scheme.dests == (Dest(0, 3), Dest(1, 1))
    assert scheme.filters == (DamosFilter("addr", True, False, 0, 4096),)
    config.validate(node_has_memory=[True, True])


def test_empty_mapping_gives_kernel_defaults() -> None:
    config = ContextConfig.from_dict({})
    assert config == ContextConfig()
    attrs = config.attrs
    assert (attrs.sample_us, attrs.aggr_us, attrs.update_us) == (5000, 100_000, 60_000_000)
    assert (attrs.min_nr_regions, attrs.max_nr_regions) == (10, 1000)
    assert not attrs.intervals_goal.enabled
    scheme = ContextConfig.from_dict({"schemes": [{"action": "stat"}]}).schemes[0]
    assert scheme == Scheme("stat")
    assert scheme.target_nid == -1 and scheme.apply_interval_us == 0
    assert scheme.access_pattern.matches(4096, 0, 0)  # our default matches everything


@pytest.mark.parametrize("max_keyword", [True, False])
def test_round_trip(max_keyword: bool) -> None:
    config = ContextConfig.from_dict(example())
    assert ContextConfig.from_dict(config.to_dict(max_keyword=max_keyword)) == config
    paddr = ContextConfig(
        operations="paddr",
        attrs=MonitoringAttrs(min_nr_regions=20, max_nr_regions=ULONG_MAX),
        targets=(Target(0, ((0x1_0000_0000, 0x2_0000_0000),)),),
        schemes=(
            Scheme(
                "migrate_cold",
                AccessPattern(nr_accesses=Range(0, 0), age=Range(50, UINT_MAX)),
                target_nid=1,
                quotas=Quotas(ms=10, goals=(QuotaGoal("user_input", 100, 40),)),
                watermarks=Watermarks("free_mem_rate", 5_000_000, 500, 400, 200),
                filters=(DamosFilter("target", matching=False, allow=True),),
            ),
        ),
    )
    assert ContextConfig.from_dict(paddr.to_dict(max_keyword=max_keyword)) == paddr


def test_to_dict_fits_toml_with_max_keyword() -> None:
    data = ContextConfig.from_dict(example()).to_dict()
    assert data["schemes"][0]["access_pattern"]["sz"] == {"min": 0, "max": "max"}
    tomli_w.dumps(data)  # ULONG_MAX would overflow TOML's signed 64-bit integers


def test_error_pickles() -> None:
    error = DamonConfigError("schemes[0].action", "unknown action 'x'", "tier.yaml")
    copied = pickle.loads(pickle.dumps(error))
    assert (copied.path, copied.problem, copied.source) == (error.path, error.problem, "tier.yaml")
    assert str(copied) == str(error) == "tier.yaml: schemes[0].action: unknown action 'x'"


def test_error_names_the_file() -> None:
    data = example()
    data["schemes"][0]["quotas"]["goals"][0]["target_metric"] = "foo"
    with pytest.raises(DamonConfigError, match=r"^tier\.yaml: schemes\[0\]\.quotas\.goals\[0\]"):
        ContextConfig.from_dict(data, source="tier.yaml")
    with pytest.raises(
        DamonConfigError, match=r"^schemes\[0\]\.quotas\.goals\[0\]\.target_metric:"
    ):
        ContextConfig.from_dict(data)


# --- Monitoring attributes: damon_set_attrs ---------------------------------------------------


def attrs_data(**intervals: Any) -> dict[str, Any]:
    return {"monitoring_attrs": {"intervals": intervals}}


def test_min_nr_regions_below_three() -> None:
    with pytest.raises(DamonConfigError, match=r"^nr_regions\.min: 2 is below 3"):
        MonitoringAttrs(min_nr_regions=2)
    MonitoringAttrs(min_nr_regions=3, max_nr_regions=3)
    rejects(
        {"monitoring_attrs": {"nr_regions": {"min": 2}}},
        "monitoring_attrs.nr_regions.min",
        "2 is below 3",
    )


def test_min_nr_regions_above_max() -> None:
    with pytest.raises(DamonConfigError, match=r"nr_regions\.min: 11 exceeds nr_regions\.max 10"):
        MonitoringAttrs(min_nr_regions=11, max_nr_regions=10)


def test_sample_above_aggr() -> None:
    rejects(
        attrs_data(sample_us=200_000, aggr_us=100_000),
        "monitoring_attrs.intervals.sample_us",
        "200000 exceeds aggr_us 100000",
    )
    MonitoringAttrs(sample_us=100_000, aggr_us=100_000)  # equal is fine


def test_zero_aggr_interval() -> None:
    with pytest.raises(DamonConfigError, match=r"intervals\.aggr_us: 0"):
        MonitoringAttrs(sample_us=0, aggr_us=0)


def test_intervals_goal_bounds() -> None:
    with pytest.raises(DamonConfigError, match=r"^min_sample_us: 20 exceeds max_sample_us 10"):
        IntervalsGoal(access_bp=400, aggrs=3, min_sample_us=20, max_sample_us=10)
    IntervalsGoal(aggrs=0, min_sample_us=20, max_sample_us=10)  # disabled: not checked
    goal = {"access_bp": 400, "aggrs": 3, "min_sample_us": 10_000, "max_sample_us": 10**7}
    rejects(
        attrs_data(sample_us=5000, intervals_goal=goal),
        "monitoring_attrs.intervals.sample_us",
        r"5000 is outside intervals_goal .* \[10000, 10000000\]",
    )
    goal["max_sample_us"] = 4000
    rejects(
        attrs_data(sample_us=5000, intervals_goal=goal),
        "monitoring_attrs.intervals.intervals_goal.min_sample_us",
        "10000 exceeds max_sample_us 4000",
    )


def test_attrs_derived_counts() -> None:
    attrs = MonitoringAttrs(sample_us=5000, aggr_us=100_000)
    assert attrs.aggr_samples == 20 and attrs.max_nr_accesses == 20
    tiny = MonitoringAttrs(sample_us=0, aggr_us=1)
    assert tiny.aggr_samples == 1 and tiny.max_nr_accesses == 1
    huge = MonitoringAttrs(sample_us=1, aggr_us=2**40)
    assert huge.max_nr_accesses == UINT_MAX


# --- Targets and regions ----------------------------------------------------------------------


def test_inverted_region() -> None:
    with pytest.raises(DamonConfigError, match=r"^regions\[0\]\.end: 0x1000 is below start 0x2000"):
        Target(0, ((0x2000, 0x1000),))
    data = {"targets": [{"pid": 1, "regions": [{"start": 8192, "end": 4096}]}]}
    rejects(data, "targets[0].regions[0].end", "is below start")


def test_overlapping_and_unsorted_regions() -> None:
    with pytest.raises(DamonConfigError, match=r"^regions\[1\]\.start: 0x1000 overlaps"):
        Target(0, ((0, 0x2000), (0x1000, 0x3000)))
    with pytest.raises(DamonConfigError, match=r"regions\[1\]\.start"):
        Target(0, ((0x4000, 0x5000), (0, 0x1000)))
    Target(0, ((0, 0x1000), (0x1000, 0x2000), (0x2000, 0x2000)))  # touching and empty are fine


def test_paddr_takes_exactly_one_target_with_regions() -> None:
    region = [{"start": 0, "end": 1 << 30}]
    two = {"operations": "paddr", "targets": [{"pid": 0, "regions": region}] * 2}
    rejects(two, "targets", "exactly one target, got 2")
    rejects({"operations": "paddr"}, "targets", "exactly one target, got 0")
    rejects({"operations": "paddr", "targets": [{"pid": 0}]}, "targets[0].regions", "at least one")
    config = ContextConfig.from_dict(
        {"operations": "paddr", "targets": [{"pid": 0, "regions": region}]}
    )
    assert config.targets[0].size_bytes == 1 << 30
    ContextConfig(targets=(Target(1), Target(2))).validate()  # vaddr: several, no regions


def test_paddr_migrate_needs_target_nid() -> None:
    data = {
        "operations": "paddr",
        "targets": [{"pid": 0, "regions": [{"start": 0, "end": 4096}]}],
        "schemes": [{"action": "migrate_hot", "dests": [{"id": 1, "weight": 1}]}],
    }
    rejects(data, "schemes[0].target_nid", "paddr ignores dests")
    data["schemes"][0]["target_nid"] = 1
    ContextConfig.from_dict(data)


# --- Schemes ----------------------------------------------------------------------------------


def test_unknown_action() -> None:
    with pytest.raises(DamonConfigError, match=r"^action: unknown action 'interleave'; expected"):
        Scheme("interleave")
    rejects({"schemes": [{"action": "collapse"}]}, "schemes[0].action", "unknown action")


@pytest.mark.parametrize("action", ["pageout", "lru_prio", "willneed", "hugepage"])
def test_kernel_action_not_simulated(action: str) -> None:
    rejects({"schemes": [{"action": action}]}, "schemes[0].action", "not simulated")


def test_migrate_needs_a_destination() -> None:
    with pytest.raises(DamonConfigError, match=r"^dests: action 'migrate_cold' has no destination"):
        Scheme("migrate_cold")
    Scheme("migrate_cold", target_nid=1)
    Scheme("migrate_hot", dests=(Dest(0, 0), Dest(1, 0)))  # zero weights are legal (no migration)
    Scheme("stat")


def test_dest_to_missing_or_memoryless_node() -> None:
    data = example()
    data["schemes"].insert(0, {"action": "stat"})
    data["schemes"][1]["dests"].append({"id": 3, "weight": 1})
    config = ContextConfig.from_dict(data)  # the kernel itself ignores bad node ids
    with pytest.raises(DamonConfigError) as info:
        config.validate(node_has_memory=[True, True])
    assert str(info.value) == "schemes[1].dests[2].id: node 3 does not exist (nodes 0..1)"
    with pytest.raises(DamonConfigError, match=r"dests\[1\]\.id: node 1 has no memory"):
        ContextConfig.from_dict(example()).validate(node_has_memory=[True, False])


def test_target_nid_and_goal_nid_checked_against_nodes() -> None:
    config = ContextConfig(schemes=(Scheme("migrate_cold", target_nid=2),))
    config.validate()
    with pytest.raises(DamonConfigError, match=r"^schemes\[0\]\.target_nid: node 2 does not"):
        config.validate(node_has_memory=[True, True])
    goal = QuotaGoal("node_mem_free_bp", 2000, nid=1)
    config = ContextConfig(schemes=(migrate(quotas=Quotas(goals=(goal,))),))
    with pytest.raises(DamonConfigError, match=r"quotas\.goals\[0\]\.nid: node 1 has no memory"):
        config.validate(node_has_memory=[True, False])


def test_goal_metrics() -> None:
    with pytest.raises(DamonConfigError, match=r"^target_metric: unknown metric 'foo'; expected"):
        QuotaGoal("foo", 1)
    with pytest.raises(DamonConfigError, match=r"'some_mem_psi_us' is known .* not simulated"):
        QuotaGoal("some_mem_psi_us", 1000)
    with pytest.raises(DamonConfigError, match=r"^nid: -1 is not a node"):
        QuotaGoal("node_mem_used_bp", 9000)
    ignored = QuotaGoal("user_input", 0)  # the kernel drops it silently
    assert not ignored.active
    assert not Quotas(goals=(ignored,)).limited
    assert Quotas(goals=(QuotaGoal("user_input", 10),)).limited
    assert Quotas(bytes=1).limited and Quotas(ms=1).limited and not Quotas().limited


def test_filters() -> None:
    with pytest.raises(DamonConfigError, match=r"^addr_end: 0x1000 is below addr_start 0x2000"):
        DamosFilter("addr", addr_start=0x2000, addr_end=0x1000)
    DamosFilter("target", addr_start=0x2000, addr_end=0x1000)  # addresses unused by target
    data = {
        "schemes": [
            {"action": "stat", "filters": [{"type": "addr", "addr_start": 10, "addr_end": 5}]}
        ]
    }
    rejects(data, "schemes[0].filters[0].addr_end", "below addr_start")
    # An ops filter's own keys do not hide that the type is not simulated.
    data["schemes"][0]["filters"] = [{"type": "memcg", "memcg_path": "/a"}]
    rejects(data, "schemes[0].filters[0].type", "'memcg' is known .* not simulated")
    data["schemes"][0]["filters"] = [{"type": "bogus"}]
    rejects(data, "schemes[0].filters[0].type", "unknown filter type 'bogus'")
    data["schemes"][0]["filters"] = [{"type": "target", "target_idx": 1}]
    rejects(data | {"targets": [{"pid": 0}]}, "schemes[0].filters[0].target_idx", "names no target")


def test_filter_booleans_accept_kstrtobool_words() -> None:
    data = {
        "schemes": [
            {"action": "stat", "filters": [{"type": "addr", "matching": "N", "allow": "Y"}]}
        ]
    }
    assert ContextConfig.from_dict(data).schemes[0].filters[0] == DamosFilter(
        "addr", matching=False, allow=True
    )
    data["schemes"][0]["filters"][0]["allow"] = "maybe"
    rejects(data, "schemes[0].filters[0].allow", "expected a bool")


def test_unknown_operations() -> None:
    rejects({"operations": "fvaddr"}, "operations", "not simulated")
    rejects({"operations": "phys"}, "operations", "unknown operations 'phys'")


def test_addr_unit_zero() -> None:
    rejects({"addr_unit": 0}, "addr_unit", "0 is below the smallest allowed value 1")


def test_range_min_above_max_matches_nothing() -> None:
    pattern = AccessPattern(nr_accesses=Range(5, 2))
    assert not pattern.matches(4096, 3, 0)
    assert pattern.sz.contains(0) and pattern.sz.contains(ULONG_MAX)


def test_range_limits_follow_kernel_types() -> None:
    with pytest.raises(
        DamonConfigError, match=r"^nr_accesses\.max: 4294967296 exceeds the unsigned int"
    ):
        AccessPattern(nr_accesses=Range(0, UINT_MAX + 1))
    with pytest.raises(DamonConfigError, match=r"^max: 18446744073709551616 exceeds"):
        Range(0, ULONG_MAX + 1)
    with pytest.raises(DamonConfigError, match=r"^min: -1 is negative"):
        Range(-1, 0)


# --- Mapping format ---------------------------------------------------------------------------


def test_unknown_key_names_path_and_valid_keys() -> None:
    data = example()
    data["schemes"][0]["quotas"]["weight"] = {}
    rejects(data, "schemes[0].quotas.weight", "unknown key; expected one of ms, bytes")
    rejects({"monitoring_attr": {}}, "monitoring_attr", "unknown key")
    data = example()
    data["monitoring_attrs"]["intervals"]["intervals_goal"]["access"] = 1
    rejects(data, "monitoring_attrs.intervals.intervals_goal.access", "unknown key")


def test_max_keyword() -> None:
    data = {
        "monitoring_attrs": {"nr_regions": {"max": "max"}},
        "schemes": [
            {
                "action": "stat",
                "access_pattern": {"nr_accesses": {"min": 3, "max": "max"}, "age": {"max": "max"}},
            }
        ],
    }
    config = ContextConfig.from_dict(data)
    assert config.attrs.max_nr_regions == ULONG_MAX
    assert config.schemes[0].access_pattern.nr_accesses == Range(3, UINT_MAX)
    assert config.schemes[0].access_pattern.age == Range(0, UINT_MAX)
    rejects(
        {"schemes": [{"action": "stat", "apply_interval_us": "max"}]},
        "schemes[0].apply_interval_us",
        "not an integer",
    )


def test_hex_and_octal_strings() -> None:
    data = {
        "addr_unit": "1",
        "monitoring_attrs": {"intervals": {"sample_us": "0x1388", "aggr_us": "100000\n"}},
        "targets": [{"pid": "0", "regions": [{"start": "0x100000000", "end": "0X180000000"}]}],
        "schemes": [
            {"action": "migrate_hot", "target_nid": "-1", "dests": [{"id": "010", "weight": "+3"}]}
        ],
    }
    config = ContextConfig.from_dict(data)
    assert config.attrs.sample_us == 5000 and config.attrs.aggr_us == 100_000
    assert config.targets[0].regions == ((1 << 32, 3 << 31),)
    assert config.schemes[0].dests == (Dest(8, 3),)  # kstrtoul base 0: leading 0 is octal
    assert config.schemes[0].target_nid == -1
    for bad in ("0x", "12ab", "1_000", " 5", "5.0", "09"):
        rejects(attrs_data(sample_us=bad), "monitoring_attrs.intervals.sample_us", "not an integer")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (5000.0, "expected an integer, got float"),
        (True, "expected an integer, got bool"),
        ([5000], "expected an integer, got list"),
        (None, "expected an integer, got NoneType"),
        (-5, "-5 is negative"),
    ],
)
def test_wrong_types(value: Any, problem: str) -> None:
    rejects(attrs_data(sample_us=value), "monitoring_attrs.intervals.sample_us", problem)


def test_wrong_container_types() -> None:
    rejects({"schemes": {"action": "stat"}}, "schemes", "expected a list")
    rejects({"monitoring_attrs": [1]}, "monitoring_attrs", "expected a mapping")
    rejects({"schemes": [{"action": 7}]}, "schemes[0].action", "expected a string")
    rejects({"schemes": [{}]}, "schemes[0].action", "missing")
    rejects({"targets": [{}]}, "targets[0].pid", "missing")
    rejects(
        {"schemes": [{"action": "migrate_hot", "dests": [{"id": 0}]}]},
        "schemes[0].dests[0].weight",
        "missing",
    )


def test_dataclasses_refuse_bad_fields_and_normalise_sequences() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        MonitoringAttrs().sample_us = 1  # type: ignore[misc]
    with pytest.raises(DamonConfigError, match=r"^access_pattern: expected an AccessPattern"):
        Scheme("stat", access_pattern={})  # type: ignore[arg-type]
    with pytest.raises(DamonConfigError, match=r"^dests\[0\]: expected a Dest"):
        Scheme("migrate_hot", dests=[(0, 1)])  # type: ignore[list-item]
    scheme = Scheme("migrate_hot", dests=[Dest(np.int64(0), 1)])  # type: ignore[arg-type]
    assert scheme.dests == (Dest(0, 1),) and type(scheme.dests[0].id) is int
    assert hash(scheme) == hash(Scheme("migrate_hot", dests=(Dest(0, 1),)))
    with pytest.raises(DamonConfigError, match=r"^matching: expected a bool, got int"):
        DamosFilter("addr", matching=1)  # type: ignore[arg-type]
    with pytest.raises(DamonConfigError, match=r"^target_nid: -2 is below"):
        Scheme("migrate_hot", target_nid=-2)
    with pytest.raises(DamonConfigError, match=r"^weight: 4294967296 exceeds the unsigned int"):
        Dest(0, UINT_MAX + 1)


def test_nested_errors_from_direct_construction_name_the_path() -> None:
    config = ContextConfig(schemes=(migrate(), Scheme("stat")))
    with pytest.raises(DamonConfigError, match=r"^monitoring_attrs: expected a MonitoringAttrs"):
        dataclasses.replace(config, attrs=object())  # type: ignore[arg-type]
    bad = Scheme("stat")
    object.__setattr__(bad, "apply_interval_us", -1)  # bypass the frozen guard
    with pytest.raises(DamonConfigError, match=r"^schemes\[1\]\.apply_interval_us: -1"):
        dataclasses.replace(config, schemes=(migrate(), bad)).validate()


# --- from_user --------------------------------------------------------------------------------


def test_from_user_conversions() -> None:
    attrs = MonitoringAttrs(sample_us=5000, aggr_us=100_000)  # 20 samples per aggregation
    pattern = AccessPattern.from_user(attrs, access_rate_percent=(5, 100), age_us=(5_000_000, None))
    assert pattern.nr_accesses == Range(1, 20)
    assert pattern.age == Range(50, UINT_MAX)
    assert pattern.sz == Range(0, ULONG_MAX)
    pattern = AccessPattern.from_user(
        attrs, sz_bytes=(4096, None), access_rate_percent=(0.5, None), age_us=(0, 250_000.0)
    )
    assert pattern.sz == Range(4096, ULONG_MAX)
    assert pattern.nr_accesses == Range(0, UINT_MAX)  # 0.5 % of 20 samples is 0.1 -> 0
    assert pattern.age == Range(0, 2)  # 2.5 aggregation intervals -> 2


def test_from_user_is_exact_at_multiples() -> None:
    attrs = MonitoringAttrs(sample_us=1000, aggr_us=1_000_000)  # 1000 samples
    # 32.3 * 1000 / 100 is 322.99999999999994 in floats (damo would write 322); exactly 323.
    pattern = AccessPattern.from_user(attrs, access_rate_percent=(32.3, 57))
    assert pattern.nr_accesses == Range(323, 570)


def test_from_user_rejects_bad_values() -> None:
    attrs = MonitoringAttrs()
    with pytest.raises(DamonConfigError, match=r"access_rate_percent\[1\]: 150 exceeds 100"):
        AccessPattern.from_user(attrs, access_rate_percent=(0, 150))
    with pytest.raises(DamonConfigError, match=r"age_us\[0\]: -1 is negative"):
        AccessPattern.from_user(attrs, age_us=(-1, None))
    with pytest.raises(DamonConfigError, match=r"age_us\[1\]: expected a finite number"):
        AccessPattern.from_user(attrs, age_us=(0, float("inf")))
