"""The host config (tierenv.host.config): the documented example parses; every mistake is
reported with the file, line and key."""

from __future__ import annotations

import re
import textwrap

import pytest

from tierenv.host import config as host_config
from tierenv.host.config import HostConfigError, parse_host_config

VALID = """
page_size = 4096

[[nodes]]
profile = "spr-8460y-ddr5-socket"

[[nodes]]
profile = "generic-cxl-x8"

[[apps]]
name = "redis"
pid = 1234
throughput_file = "redis.gbps"
reference_gbps = 80.0

[[apps]]
name = "batch"
pid_file = "/run/batch.pid"
throughput_command = "batch-gbps --now"

[perf]
file = "perf.csv"
interval_ms = 500

[[perf.events]]
name = "uncore_imc_0/cas_count_read/"
node = 0
kind = "read"

[[perf.events]]
name = "uncore_imc_0/cas_count_write/"
node = 0
kind = "write"

[[perf.events]]
name = "cxl_read/"
node = 1
kind = "read"

[[perf.events]]
name = "cxl_write/"
node = 1
kind = "write"
"""


def test_the_example_parses(tmp_path):
    config = parse_host_config(VALID, "host.toml", tmp_path)
    assert config.n_nodes == 2 and config.page_size == 4096
    assert [p.name for p in config.profiles] == ["spr-8460y-ddr5-socket", "generic-cxl-x8"]
    redis, batch = config.apps
    assert redis.pid == 1234 and redis.reference_gbps == 80.0
    assert redis.throughput is not None and redis.throughput.path == tmp_path / "redis.gbps"
    assert batch.pid_file is not None and str(batch.pid_file) == "/run/batch.pid"
    assert config.perf is not None and config.perf.file == tmp_path / "perf.csv"
    assert config.perf.nodes_with("read", "write") == {0, 1}
    assert config.perf.nodes_with("occupancy", "inserts") == set()


def test_the_module_docstring_example_parses():
    """The example in the module docstring is the user's template: it must stay valid."""
    doc = host_config.__doc__
    example = textwrap.dedent(doc.split("::", 1)[1].split("Capacities come", 1)[0])
    example = example.replace('"cxl-..."', '"generic-cxl-x8"')
    config = parse_host_config(example, "docstring")
    assert config.n_nodes == 2 and len(config.apps) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("page_size = 4096", "page_sise = 4096"), "host.toml:2: page_sise: unknown key"),
        (("pid = 1234\n", ""), "apps[0]: give exactly one of pid or pid_file"),
        (('kind = "write"', 'kind = "writes"'), "perf.events[1].kind: 'writes'"),
        (("node = 1", "node = 2"), "perf.events[2].node: 2.0 is not a node id 0..1"),
        (('name = "batch"', 'name = "redis"'), "application names must differ"),
        (('file = "perf.csv"', "spawn = false"), "give either file = PATH"),
        (('profile = "generic-cxl-x8"', 'profile = "nope"'), "nodes[1].profile"),
        (("reference_gbps = 80.0", "reference_gbps = 0"), "reference_gbps: 0 is too small"),
    ],
)
def test_mistakes_name_the_file_line_and_key(change, message):
    old, new = change
    assert old in VALID
    with pytest.raises(HostConfigError, match=re.escape(message)):
        parse_host_config(VALID.replace(old, new, 1), "host.toml")


def test_a_pid_file_is_read_each_time(tmp_path):
    pid_file = tmp_path / "app.pid"
    text = VALID.replace('pid_file = "/run/batch.pid"', f'pid_file = "{pid_file}"')
    batch = parse_host_config(text, "host.toml").apps[1]
    pid_file.write_text("77\n")
    assert batch.resolve_pid() == 77
    pid_file.write_text("78\n")
    assert batch.resolve_pid() == 78
    pid_file.write_text("gone\n")
    with pytest.raises(HostConfigError, match="holds 'gone', not a pid"):
        batch.resolve_pid()
