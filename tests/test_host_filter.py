"""Host filters on a distribution (``random:default?exclude=HOST``): how a host family is left
out of training for the leave-one-hardware-out evaluation (issue 18 item 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from agents.training import ConfigError, load_config
from tierenv.envs.vector_mixed import MixedScenarioVectorEnv
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv
from tierenv.workload.generator import (
    DistributionError,
    distribution_of,
    draw_scenario,
    load_distribution,
    restrict_hosts,
)

DEFAULT = load_distribution("default")
HOSTS = [host.name for host in DEFAULT.hosts]


def profiles_of(host: str) -> list[str]:
    return [profile for profile, _ in next(h for h in DEFAULT.hosts if h.name == host).nodes]


def test_exclude_and_hosts_keep_the_named_hosts_in_order() -> None:
    left_out = distribution_of("random:default?exclude=amd-damos-v4,spr-x8-cxl")
    assert [h.name for h in left_out.hosts] == [
        h for h in HOSTS if h not in ("amd-damos-v4", "spr-x8-cxl")
    ]
    only = distribution_of("random:default?hosts=spr-x8-cxl,amd-damos-v4")
    assert [h.name for h in only.hosts] == ["amd-damos-v4", "spr-x8-cxl"]
    both = distribution_of("random:default?hosts=spr-x8-cxl,amd-damos-v4&exclude=spr-x8-cxl")
    assert [h.name for h in both.hosts] == ["amd-damos-v4"]
    # everything but the hosts is the distribution itself
    assert restrict_hosts(DEFAULT).hosts == DEFAULT.hosts
    assert left_out.apps == DEFAULT.apps and left_out.name == DEFAULT.name


def test_draws_never_come_from_an_excluded_host() -> None:
    left_out = distribution_of("random:default?exclude=amd-damos-v4")
    rng = np.random.default_rng(0)
    drawn = {
        tuple(node.profile.name for node in draw_scenario(left_out, rng).nodes) for _ in range(60)
    }
    assert tuple(profiles_of("amd-damos-v4")) not in drawn
    assert len(drawn) >= 4  # the other hosts are still drawn


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("random:default?exclude=nope", r"no host 'nope'.*its hosts: bytedance-cxl"),
        ("random:default?hosts=", r"bad host filter 'hosts='"),
        ("random:default?only=amd-damos-v4", r"bad host filter 'only=amd-damos-v4'"),
        ("random:default?exclude=spr-x8-cxl&exclude=amd-damos-v4", r"each at most once"),
        (f"random:default?exclude={','.join(HOSTS)}", r"leaves no host"),
    ],
)
def test_bad_filters_are_named(spec: str, message: str) -> None:
    with pytest.raises(DistributionError, match=message):
        distribution_of(spec)


def test_envs_draw_from_the_filtered_distribution() -> None:
    env = WeightedInterleaveEnv("random:default?hosts=amd-damos-v4")
    for seed in range(3):
        env.reset(seed=seed)
        assert [node.profile.name for node in env.scenario.nodes] == profiles_of("amd-damos-v4")
    env.close()
    vector = MixedScenarioVectorEnv(num_envs=4, scenario="random:default?hosts=spr-x8-cxl")
    vector.reset(seed=0)
    for scenario in vector.scenarios:
        assert [node.profile.name for node in scenario.nodes] == profiles_of("spr-x8-cxl")
    vector.close()


def test_training_configs_take_a_filter_with_a_distribution_file(tmp_path: Path) -> None:
    source = Path(__file__).resolve().parents[1] / "tierenv/workload/distributions/default.toml"
    (tmp_path / "mine.toml").write_text(source.read_text())
    data = {
        "name": "loho",
        "algorithm": "PPO",
        "policy": "MlpPolicy",
        "env": {"backend": "fluid", "n_envs": 4,
                "scenarios": ["random:mine.toml?exclude=amd-damos-v4"]},
        "eval": {"scenarios": ["co-runner"]},
        "timesteps": 1000,
    }  # fmt: skip
    config_file = tmp_path / "cfg.yaml"
    config_file.write_text(yaml.safe_dump(data))
    config = load_config(config_file)
    assert config.env.scenarios == (
        f"random:{(tmp_path / 'mine.toml').resolve()}?exclude=amd-damos-v4",
    )
    data["env"]["scenarios"] = ["random:default?exclude=no-such-host"]
    config_file.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"env\.scenarios: bad scenario.*no host 'no-such-host'"):
        load_config(config_file)
