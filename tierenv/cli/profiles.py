"""`tierenv profiles`: list the shipped memory-node profiles, or show one."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="profile name or path to a profile file")


def run(args: argparse.Namespace) -> int:
    from tierenv.hardware.profile import load_profile, shipped_profile_names

    if args.name:
        profile = load_profile(args.name)
        import tomli_w

        print(tomli_w.dumps(profile.to_dict()), end="")
        return 0
    print(f"{'name':28} {'kind':10} {'idle ns':>8} {'read GB/s':>10} {'2:1 GB/s':>9}  description")
    for name in shipped_profile_names():
        profile = load_profile(name)
        reads_only = float(profile.saturation_gbps(1.0))
        two_to_one = float(profile.saturation_gbps(0.75))  # MLC -W2 with RFO: 3/4 reads
        print(
            f"{name:28} {profile.kind:10} {profile.idle_latency_ns:8.1f} "
            f"{reads_only:10.1f} {two_to_one:9.1f}  {profile.description}"
        )
    return 0
