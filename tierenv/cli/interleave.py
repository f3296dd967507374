"""`tierenv interleave`: throughput and node latencies of one application across weights."""

from __future__ import annotations

import argparse

# Bounds of the application: a whole socket's miss buffers (cores x L2 MSHRs) hold a few
# thousand lines, and a millisecond between misses is an idle application. Beyond them the
# solver's numbers overflow or mean nothing.
MAX_MLP = 100_000.0
MAX_THINK_NS = 1e6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Solve the closed-loop model for one application at a range of interleave weights "
        "and print its throughput and each node's bandwidth and latency. By default a "
        "two-node host (--ddr, --cxl) at weights w:1; --nodes takes any number of node "
        "profiles (local, CXL or remote views), node 0 first, and --weights the weight "
        "vectors to try (default for more than two nodes: the discrete env's grid)."
    )
    parser.add_argument("--ddr", default="spr-8460y-ddr5-socket", help="DDR node profile")
    parser.add_argument("--cxl", default="generic-cxl-x8", help="CXL node profile")
    parser.add_argument(
        "--nodes",
        help="comma-separated node profiles, node 0 first (replaces --ddr and --cxl)",
    )
    parser.add_argument(
        "--weights",
        nargs="+",
        metavar="W0:W1[:W2...]",
        help="weight vectors to try, one weight per node (0..255, not all 0), e.g. 3:1:1",
    )
    parser.add_argument(
        "--mlp",
        type=float,
        default=512.0,
        help=f"64-B misses in flight, above 0 and at most {MAX_MLP:g} (default 512)",
    )
    parser.add_argument(
        "--think-ns",
        type=float,
        default=0.0,
        help=f"compute time between misses per slot, ns, 0 to {MAX_THINK_NS:g} (default 0)",
    )
    parser.add_argument(
        "--read-fraction",
        type=float,
        default=0.75,
        help="controller-level read fraction (default 0.75)",
    )
    parser.add_argument(
        "--max-weight",
        type=int,
        default=16,
        help="two nodes without --weights: largest w in w:1 (default 16)",
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from tierenv.envs.discrete import default_levels, weight_grid
    from tierenv.hardware.profile import load_profile
    from tierenv.hardware.solver import NodeSet, solve

    if not 0 < args.mlp <= MAX_MLP:  # NaN fails too
        raise ValueError(f"--mlp {args.mlp:g}: misses in flight must be in (0, {MAX_MLP:g}]")
    if not 0 <= args.think_ns <= MAX_THINK_NS:
        raise ValueError(f"--think-ns {args.think_ns:g}: must be in [0, {MAX_THINK_NS:g}] ns")
    if args.nodes is not None:
        names = [name.strip() for name in args.nodes.split(",")]
        if len(names) < 2 or not all(names):
            raise ValueError(f"--nodes: expected two or more profile names, got {args.nodes!r}")
        labels = [f"node{i}" for i in range(len(names))]
    else:
        names, labels = [args.ddr, args.cxl], ["DDR", "CXL"]
    nodes = NodeSet([load_profile(name) for name in names])
    n_nodes = len(names)
    weights: list[tuple[int, ...]]
    if args.weights is not None:
        weights = [_weight_vector(text, n_nodes) for text in args.weights]
    elif n_nodes == 2:
        if not 1 <= args.max_weight <= 255:
            raise ValueError(f"--max-weight must be a weight in 1..255, got {args.max_weight}")
        weights = [(1, 0), *((w, 1) for w in range(args.max_weight, 0, -1)), (0, 1)]
    else:
        grid, _ = weight_grid(n_nodes, default_levels(n_nodes))
        weights = [tuple(int(w) for w in row) for row in grid]
    # Row 0 is node 0 alone, the reference of the "vs" column.
    reference = (1,) + (0,) * (n_nodes - 1)
    table = np.array([reference, *weights], dtype=float)
    split = (table / table.sum(axis=1, keepdims=True))[:, None, :]
    solution = solve(nodes, args.mlp, args.think_ns, args.read_fraction, split)
    throughput = solution.throughput_gbps[:, 0]
    first = ":".join(labels) if n_nodes == 2 and args.nodes is None else "weights"
    width = max(len(first), *(len(":".join(map(str, w))) for w in weights))
    node_columns = "".join(f" {label + ' GB/s':>11} {label + ' ns':>9}" for label in labels)
    vs = f"vs {labels[0]}"
    print(f"{first:>{width}} {'GB/s':>8} {vs:>8}{node_columns}")
    for row, w in enumerate(weights, start=1):
        cells = "".join(
            f" {bw:11.1f} {lat:9.1f}"
            for bw, lat in zip(
                solution.node_bandwidth_gbps[row], solution.node_latency_ns[row], strict=True
            )
        )
        gain = 100 * (throughput[row] / throughput[0] - 1)
        label = ":".join(map(str, w))
        print(f"{label:>{width}} {throughput[row]:8.1f} {gain:+7.1f}%{cells}")
    return 0


def _weight_vector(text: str, n_nodes: int) -> tuple[int, ...]:
    """``--weights`` entry ``text`` ("3:1:1") as one weight per node, checked."""
    try:
        weights = tuple(int(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"--weights: expected integers like 3:1, got {text!r}") from None
    if len(weights) != n_nodes:
        raise ValueError(f"--weights: {text!r} has {len(weights)} weights for {n_nodes} nodes")
    if any(not 0 <= w <= 255 for w in weights) or not any(weights):
        raise ValueError(f"--weights: {text!r} needs weights in 0..255, not all 0")
    return weights
