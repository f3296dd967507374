"""`tierenv export`: export a trained policy to ONNX for the daemon."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Export the deterministic policy of a training run (a run folder or its "
        "model.zip) to an ONNX file that maps raw observations to actions, observation "
        "normalisation included, with a JSON sidecar (features, units, versions, the "
        "action-to-weights mapping, checksum). The export is checked against the SB3 "
        "policy on several hundred observations and refused beyond 1e-5. The exported "
        "policy runs with numpy and onnxruntime only (kind onnx in tierenv compare). "
        "Trust: the run's model.zip is unpickled by stable-baselines3, so export only runs "
        "you trust (your own training runs); vecnormalize.pkl is read without running code "
        "from it. Both files are written to a temporary folder beside --out and renamed "
        "into place together; --out must name an .onnx file."
    )
    parser.add_argument("run", type=Path, help="training run folder (runs/train/NAME/seed_N)")
    parser.add_argument(
        "--out", type=Path, default=None, help="ONNX file to write (default RUN/policy.onnx)"
    )


def run(args: argparse.Namespace) -> int:
    from agents.export import export_policy

    run_folder = args.run.parent if args.run.suffix == ".zip" else args.run
    exported = export_policy(args.run, args.out or run_folder / "policy.onnx")
    print(f"policy:  {exported.onnx}")
    print(f"sidecar: {exported.sidecar}")
    print(f"largest action difference from the SB3 policy: {exported.max_action_difference:.1e}")
    return 0
