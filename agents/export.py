"""Exporting a training run's policy to ONNX, so a daemon can act on a host with numpy and
onnxruntime only (no torch, no stable-baselines3, no pickles).

The graph takes the raw float32 observation (``ObservationSpec.build``'s vector, batch
dimension dynamic) and returns the deterministic action exactly as ``model.predict(...,
deterministic=True)`` would on ``VecNormalize``'s observation: the normalisation is folded in
(in float64, as VecNormalize computes it, then cast to float32), then the actor's mean action
(PPO) or tanh-squashed mean (SAC), unscaled (squashed policies) or clipped (the others) to the
action space as SB3's ``predict`` does for Box spaces. Weights are not in the graph: the
daemon maps actions with ``tierenv.contracts.actions.action_to_weights``, which the sidecar
names with its constants.

Beside ``policy.onnx`` goes ``policy.json``: what the graph expects (the ordered features
with their units), how it was made (run, versions, normalisation constants) and the graph's
sha256, so a loader can refuse a graph that is not the one described. Every export is checked
against SB3 on observations inside and outside the observation space before it is written.

Both files are made in a temporary directory beside the output, then renamed into place, the
graph first and the sidecar last; if the second rename fails the first is undone, so an old
pair stays whole. (Only a kill between the two renames can leave a new graph beside the old
sidecar, which every loader refuses on the checksum.)

Trust boundary: exporting loads the run with stable-baselines3, and ``model.zip`` holds
cloudpickled objects that SB3 unpickles, so export runs you trust (your own training runs)
only. ``vecnormalize.pkl`` is read by a restricted unpickler that runs no code from the file.
The exported pair holds no pickle: it is what to copy to a host.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import tierenv
from agents.controllers.base import ControllerError
from agents.policies.learned import RECURRENT, LearnedPolicy, one_torch_thread
from tierenv.contracts import actions
from tierenv.files import fsync_path

FORMAT = "tierenv-onnx-policy"
FORMAT_VERSION = 1
# Opset 17: every op used here (Gemm/MatMul, Tanh, ReLU, Clip, Max/Min, Cast, Div, Sub) has
# been stable in it for years, and onnxruntime 1.32 runs it (it runs opsets up to 23).
OPSET = 17
INPUT_NAME = "observation"
OUTPUT_NAME = "action"
TOLERANCE = 1e-5  # largest action difference from SB3 an export may have
_CHECK_OBSERVATIONS = 512


class ExportError(ControllerError):
    """A run that cannot be exported (recurrent, privileged, unsupported policy) or an export
    that does not reproduce SB3's actions."""


@dataclass(frozen=True)
class ExportedPolicy:
    """An export's files and what it checked: ``max_action_difference`` is the largest
    absolute action difference from SB3's ``predict`` over the check observations."""

    onnx: Path
    sidecar: Path
    sha256: str
    metadata: dict[str, Any]
    max_action_difference: float


def sidecar_path(onnx_path: str | Path) -> Path:
    """The JSON sidecar beside an ``.onnx`` file."""
    return Path(onnx_path).with_suffix(".json")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_policy(run: Path, out: Path) -> ExportedPolicy:
    """Export the deterministic policy of training run ``run`` (a run directory or model
    ``.zip``, as the ``sb3`` controller takes it) to the ONNX file ``out``, with its JSON
    sidecar ``out.with_suffix(".json")``.

    The graph maps raw float32 observations (batch, features) to actions (batch, nodes),
    VecNormalize's normalisation and SB3's Box post-processing included; it is checked against
    ``model.predict(deterministic=True)`` on several hundred observations (within the
    observation space and beyond it, so that normalisation clipping is exercised) and refused
    when any action differs by more than 1e-5. Both files land together: on any failure
    nothing new is left and an old pair is kept (see the module docstring).

    Trust: the run's ``model.zip`` is unpickled by SB3; export runs you trust only.

    A ``quota_action`` run's graph has one more output, the DAMOS quota's action value; the
    sidecar says so (``quota_action``) with ``action_to_quota``'s range.

    Refused with ``ExportError`` (a ``ControllerError``, hence a ``ValueError``): RecurrentPPO
    runs (LSTM state is not exported yet), runs on simulator-only (privileged) features, and
    anything the ``sb3`` controller refuses to load.
    """
    run, out = Path(run), Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"export: the output must be an .onnx file, got {out}")
    for path in (out, sidecar_path(out)):
        if path.is_dir():
            raise ExportError(
                f"export: {path} is a directory; give the .onnx file to write, e.g. "
                f"{path / 'policy.onnx'}"
            )
    try:
        policy = LearnedPolicy(run)  # checks run.json, features, normaliser and model
    except ExportError:
        raise
    except ControllerError as err:
        raise ExportError(f"export: {err}") from err
    where = f"export of {policy.files.path}"
    if policy.algorithm in RECURRENT:
        raise ExportError(
            f"{where}: {policy.algorithm} is not supported yet (its LSTM state would need "
            "state inputs and outputs in the graph); export PPO or SAC runs"
        )
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        one_torch_thread(),
        tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as staging,
    ):
        tmp_onnx = Path(staging) / out.name
        tmp_sidecar = sidecar_path(tmp_onnx)
        module = _ActionGraph(policy, where).eval()
        _torch_export(module, len(policy.features), tmp_onnx)
        observations = _check_observations(policy)
        with torch.no_grad():
            torch_actions = module(torch.as_tensor(observations)).numpy()
        difference = _check_against_sb3(policy, tmp_onnx, observations, torch_actions, where)
        digest = sha256_file(tmp_onnx)
        metadata = _metadata(policy, digest, difference, observations.shape[0])
        tmp_sidecar.write_text(json.dumps(metadata, indent=2) + "\n")
        try:
            _install([(tmp_onnx, out), (tmp_sidecar, sidecar_path(out))], Path(staging))
        except OSError as err:
            raise ExportError(
                f"export: could not put {out} and {sidecar_path(out).name} in place ({err}); "
                "nothing new was left there"
            ) from err
    return ExportedPolicy(out, sidecar_path(out), digest, metadata, difference)


def _install(moves: Sequence[tuple[Path, Path]], staging: Path) -> None:
    """Rename each new file over its target, in order. The old targets are first hard-linked
    (or copied) into ``staging``; if a rename fails, the ones done are undone, so the targets
    end all new or all as they were."""
    backups: list[Path | None] = []
    for index, (_, target) in enumerate(moves):
        if target.exists():
            backup = staging / f"old.{index}"
            try:
                os.link(target, backup)
            except OSError:  # a file system without hard links
                shutil.copy2(target, backup)
            backups.append(backup)
        else:
            backups.append(None)
    for source, _ in moves:
        fsync_path(source)  # the data is on disk before any name points at it
    done: list[int] = []
    try:
        for index, (source, target) in enumerate(moves):
            os.replace(source, target)
            done.append(index)
    except BaseException:
        for index in reversed(done):
            kept, target = backups[index], moves[index][1]
            if kept is None:
                target.unlink(missing_ok=True)
            else:
                os.replace(kept, target)
        raise
    fsync_path(moves[0][1].parent)


# ------------------------------------------------------------------------------ the graph
def _ActionGraph(policy: LearnedPolicy, where: str) -> Any:  # noqa: N802 (a module factory)
    """The torch module exported: normalisation, actor, post-processing."""
    import torch
    from stable_baselines3.common.distributions import (
        DiagGaussianDistribution,
        SquashedDiagGaussianDistribution,
        StateDependentNoiseDistribution,
    )
    from stable_baselines3.common.preprocessing import preprocess_obs

    model = policy.model
    sb3_policy = model.policy
    space = model.action_space
    low = torch.as_tensor(np.asarray(space.low, dtype=np.float32))
    high = torch.as_tensor(np.asarray(space.high, dtype=np.float32))
    normalizer = policy.normalizer

    if policy.algorithm == "PPO":
        dist = sb3_policy.action_dist
        if not isinstance(dist, DiagGaussianDistribution | StateDependentNoiseDistribution):
            raise ExportError(f"{where}: unsupported PPO action distribution {type(dist)}")
        squash = bool(sb3_policy.squash_output)
        extractor = sb3_policy.pi_features_extractor

        def mean_action(obs: torch.Tensor) -> torch.Tensor:
            features = extractor(preprocess_obs(obs, sb3_policy.observation_space))
            mean = sb3_policy.action_net(sb3_policy.mlp_extractor.forward_actor(features))
            return torch.tanh(mean) if squash else mean  # the distribution's mode

    elif policy.algorithm == "SAC":
        actor = sb3_policy.actor
        if not isinstance(
            actor.action_dist, SquashedDiagGaussianDistribution | StateDependentNoiseDistribution
        ):
            raise ExportError(f"{where}: unsupported SAC action distribution")
        squash = bool(sb3_policy.squash_output)

        def mean_action(obs: torch.Tensor) -> torch.Tensor:
            features = actor.features_extractor(preprocess_obs(obs, actor.observation_space))
            return torch.tanh(actor.mu(actor.latent_pi(features)))  # the squashed mode

    else:  # pragma: no cover - LearnedPolicy knows no other algorithm
        raise ExportError(f"{where}: cannot export {policy.algorithm}")

    class ActionGraph(torch.nn.Module):
        mean: torch.Tensor  # buffers (with a normalizer)
        std: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.policy = sb3_policy  # registered, so eval() reaches it
            if normalizer is not None:
                self.register_buffer("mean", torch.as_tensor(normalizer.mean, dtype=torch.float64))
                std = np.sqrt(normalizer.var + normalizer.epsilon)  # numpy's, bit for bit
                self.register_buffer("std", torch.as_tensor(std, dtype=torch.float64))
                self.clip = normalizer.clip_obs

        def forward(self, observation: torch.Tensor) -> torch.Tensor:
            obs = observation
            if normalizer is not None:
                # VecNormalize: float64 arithmetic, clipped, then float32.
                scaled = (obs.double() - self.mean) / self.std
                obs = torch.clamp(scaled, -self.clip, self.clip).float()
            action = mean_action(obs)
            if squash:  # BasePolicy.unscale_action
                return low + (0.5 * (action + 1.0) * (high - low))
            return torch.minimum(torch.maximum(action, low), high)  # np.clip; NaN passes

    return ActionGraph()


def _torch_export(module: Any, n_features: int, path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is the legacy one; it needs no onnxscript
        # and handles these small MLPs exactly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(1, n_features, dtype=torch.float32),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    import onnx

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def _check_observations(policy: LearnedPolicy) -> np.ndarray:
    """Raw observations to compare on: the bounds, the normaliser's mean, uniform draws in the
    observation space, and draws well beyond it and far from the mean (normalisation clips)."""
    rng = np.random.default_rng(0)
    low, high = policy.spec.low.astype(np.float64), policy.spec.high.astype(np.float64)
    n = _CHECK_OBSERVATIONS
    rows = [low, high, (low + high) / 2]
    if policy.normalizer is not None:
        rows.append(policy.normalizer.mean)
    inside = rng.uniform(low, high, size=(n // 2, low.size))
    span = high - low
    beyond = rng.uniform(low - 2 * span, high + 2 * span, size=(n - n // 2 - len(rows), low.size))
    return np.vstack([np.array(rows), inside, beyond]).astype(np.float32)


def _check_against_sb3(
    policy: LearnedPolicy,
    onnx_path: Path,
    observations: np.ndarray,
    torch_actions: np.ndarray,
    where: str,
) -> float:
    """The largest action difference between the ONNX graph (in onnxruntime) and SB3's
    predict on VecNormalize's observations; above ``TOLERANCE`` the export is refused."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_actions = session.run([OUTPUT_NAME], {INPUT_NAME: observations})[0]
    normalised = policy.normalizer(observations) if policy.normalizer else observations
    sb3_actions, _ = policy.model.predict(normalised, deterministic=True)
    difference = float(
        max(np.max(np.abs(onnx_actions - sb3_actions)), np.max(np.abs(torch_actions - sb3_actions)))
    )
    if not np.isfinite(difference) or difference > TOLERANCE:
        raise ExportError(
            f"{where}: the exported graph's actions differ from SB3's by {difference:.3g} "
            f"(more than {TOLERANCE:g}); not written"
        )
    return difference


# ------------------------------------------------------------------------------ the sidecar
def _metadata(
    policy: LearnedPolicy, digest: str, difference: float, n_checked: int
) -> dict[str, Any]:
    space = policy.model.action_space
    features = [
        {
            "name": name,
            "group": group.name,
            "per": group.per,
            "unit": group.unit,
            "low": group.low,
            "high": group.high,
            "privileged": not group.host_observable,
        }
        for group in policy.spec.groups
        for name in group.names(policy.n_nodes)
    ]
    normalizer = policy.normalizer
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tierenv_version": tierenv.__version__,
        "run": {
            "path": str(policy.files.root.resolve()),
            "label": policy.files.label,
            "git_commit": policy.run.get("git_commit", "unknown"),
            "tierenv_version": policy.run.get("tierenv_version", "unknown"),
            "seed": policy.run["seed"],
            "timesteps": policy.run.get("timesteps"),
        },
        "algorithm": policy.algorithm,
        "deterministic": True,
        "n_nodes": policy.n_nodes,
        "quota_action": policy.quota_action,
        "feature_groups": list(policy.spec.group_names),
        "features": features,
        "normalization": None
        if normalizer is None
        else {
            "kind": "VecNormalize",
            "mean": normalizer.mean.tolist(),
            "var": normalizer.var.tolist(),
            "epsilon": normalizer.epsilon,
            "clip_obs": normalizer.clip_obs,
            "folded_into_graph": True,
        },
        "action": {
            "low": np.asarray(space.low, dtype=np.float64).tolist(),
            "high": np.asarray(space.high, dtype=np.float64).tolist(),
            "postprocess": "unscale" if policy.model.policy.squash_output else "clip",
        },
        "action_to_weights": actions.weights_mapping(),
        "action_to_quota": actions.quota_mapping(),
        "onnx": {
            "opset": OPSET,
            "input": INPUT_NAME,
            "output": OUTPUT_NAME,
            "sha256": digest,
        },
        "check": {"observations": n_checked, "max_action_difference": difference},
    }
