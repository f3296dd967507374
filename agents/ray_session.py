"""A Ray session for work spread as tasks (compare trials, training seeds, tuning trials):
the cluster at an address, or a local instance sized like the process pool it replaces."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

RAY_MISSING = "--ray needs Ray: pip install 'ray>=2.9' (or the project's [ray] extra)"


def add_ray_arguments(parser: argparse.ArgumentParser, work: str, address_needs: str) -> None:
    """``--ray`` and ``--ray-address`` (read by ``ray_session``) for a command whose ``work``
    ("trials", "training seeds") can run as Ray tasks; ``address_needs`` says what a cluster's
    nodes must share with this one."""
    parser.add_argument("--ray", action="store_true", help=f"run {work} on a local Ray instance")
    parser.add_argument(
        "--ray-address",
        default=None,
        help=f"run {work} on this Ray cluster (e.g. ray://head:10001); {address_needs}",
    )


@contextlib.contextmanager
def ray_session(
    workers: int, address: str | None = None, missing: type[Exception] = RuntimeError
) -> Iterator[Any]:
    """Yields the ``ray`` module with a session up: joins ``address`` or starts a local
    instance of ``workers`` CPUs, unless one is already up (then it is left running); a
    session started here is shut down on exit. Without Ray installed, raises ``missing``."""
    try:
        import ray
    except ImportError as err:
        raise missing(RAY_MISSING) from err
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
