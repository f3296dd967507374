"""An exported policy (``agents.export``) behind the ``Controller`` interface (kind ``onnx``):
what the daemon runs on a host, with numpy and onnxruntime only (this module never imports
torch or stable-baselines3, and reads no pickles).

The sidecar JSON is checked before the graph is trusted: format version, the graph's sha256,
and at ``reset`` the host's node count and the feature names its ``ObservationSpec`` gives.
``decide`` builds the observation as the ``sb3`` controller does, runs the graph (which
normalises it itself) and maps the action with ``action_to_weights``. A non-finite action (or
observation) never reaches the kernel: the weights in force at reset are returned instead,
counted in ``fallbacks`` and logged, so a daemon keeps a safe configuration.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from agents.controllers.base import (
    ControlContext,
    Controller,
    ControllerError,
    HostNeeds,
    require_node_count,
)
from tierenv.contracts import actions
from tierenv.contracts.actions import action_to_quota, action_to_weights
from tierenv.contracts.features import FeatureError, ObservationSpec
from tierenv.contracts.measurements import Measurements

# The export's format (agents.export writes it; kept here too so this module needs no torch).
FORMAT = "tierenv-onnx-policy"
FORMAT_VERSION = 1
# A sidecar lists features and normalisation statistics: kilobytes. The limit stops a
# mistaken path (a log, a disk image) from being read whole by the daemon.
MAX_SIDECAR_BYTES = 16 << 20

log = logging.getLogger(__name__)


class OnnxPolicy(Controller):
    """An exported deterministic policy run by onnxruntime.

    ``path``: the ``.onnx`` file or its ``.json`` sidecar (the other must be beside it).
    """

    kind: ClassVar[str] = "onnx"

    def __init__(self, path: str | Path) -> None:
        if not isinstance(path, str | Path) or not str(path):
            raise ControllerError(f"onnx: parameter 'path' must be an .onnx file, got {path!r}")
        given = Path(path).expanduser()
        self.onnx_path = given.with_suffix(".onnx")
        self.sidecar_path = given.with_suffix(".json")
        self._where = f"onnx policy {given}"
        if given.suffix not in (".onnx", ".json"):
            raise ControllerError(f"{self._where}: expected an .onnx file or its .json sidecar")
        for file in (self.onnx_path, self.sidecar_path):
            if not file.is_file():
                raise ControllerError(f"{self._where}: {file} is missing")
        self.meta = self._read_sidecar()
        self.n_nodes: int = self.meta["n_nodes"]
        # sidecars written before the quota action existed have no key: weights only
        self.quota_action: bool = self.meta.get("quota_action", False)
        self._quota: int | None = None
        self.features: tuple[str, ...] = tuple(f["name"] for f in self.meta["features"])
        self.spec = self._observation_spec(self.n_nodes)
        self._session = self._load_session()
        self.fallbacks = 0  # decisions that returned the safe weights (non-finite action)

    # ------------------------------------------------------------------ Controller API
    def needs(self) -> HostNeeds:
        """The node count the policy was made for and the feature groups it observes."""
        return HostNeeds(self.n_nodes, self.spec.group_names)

    def reset(self, context: ControlContext) -> None:
        super().reset(context)
        require_node_count(self._where, "exported for", self.n_nodes, context.nodes)
        host_nodes = context.nodes.n_nodes
        self.spec = self._observation_spec(host_nodes)
        self.safe_weights = np.asarray(context.initial_weights, dtype=np.int64).copy()
        self.fallbacks = 0
        self.last_observation: np.ndarray | None = None
        self.last_action: np.ndarray | None = None

    def decide(self, measurements: Measurements) -> np.ndarray:
        observation = self.spec.build(measurements, None, self.context.nodes)
        self.last_observation = observation
        action = self.act(observation[None, :])[0]
        self.last_action = action
        if not (np.all(np.isfinite(action)) and np.all(np.isfinite(observation))):
            self.fallbacks += 1
            log.warning(
                "%s: non-finite %s at t=%.3f s; keeping the safe weights %s (fallback %d)",
                self._where,
                "action" if np.all(np.isfinite(observation)) else "observation",
                float(measurements.time_s),
                self.safe_weights.tolist(),
                self.fallbacks,
            )
            return self.safe_weights.copy()
        if self.quota_action:
            self._quota = action_to_quota(float(action[self.n_nodes]))
        return action_to_weights(action[: self.n_nodes], self.n_nodes)

    def damos_quota(self) -> int | None:
        """The quota the last finite action asked for (None: weights-only policy)."""
        return self._quota

    def describe(self) -> str:
        run = self.meta.get("run", {})
        return f"{self.meta['algorithm']} onnx seed {run.get('seed', '?')} ({self.onnx_path.name})"

    # ---------------------------------------------------------------------- internals
    def act(self, observations: np.ndarray) -> np.ndarray:
        """The graph's actions (float32, (batch, nodes)) for raw observations."""
        batch = np.ascontiguousarray(observations, dtype=np.float32)
        return self._session.run([self._output], {self._input: batch})[0]

    def _read_sidecar(self) -> dict[str, Any]:
        try:
            size = self.sidecar_path.stat().st_size
            if size > MAX_SIDECAR_BYTES:
                raise ControllerError(
                    f"{self._where}: {self.sidecar_path} is {size} bytes; a sidecar is at most "
                    f"{MAX_SIDECAR_BYTES} (is it the right file?)"
                )
            meta = json.loads(self.sidecar_path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise ControllerError(
                f"{self.sidecar_path}: not a UTF-8 text file (byte 0x{err.object[err.start]:02x} "
                f"at offset {err.start}); expected the JSON sidecar of {self._where}"
            ) from None
        except (OSError, json.JSONDecodeError) as err:
            raise ControllerError(
                f"{self._where}: cannot read {self.sidecar_path} ({err})"
            ) from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ControllerError(f"{self._where}: {self.sidecar_path} is not a {FORMAT} sidecar")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ControllerError(
                f"{self._where}: sidecar format version {meta.get('format_version')!r}; this "
                f"tierenv reads version {FORMAT_VERSION} (re-export the run)"
            )
        try:
            n_nodes = meta["n_nodes"]
            names = [f["name"] for f in meta["features"]]
            privileged = [f["name"] for f in meta["features"] if f["privileged"]]
            mapping = meta["action_to_weights"]
            expected_sha = meta["onnx"]["sha256"]
        except (KeyError, TypeError) as err:
            raise ControllerError(f"{self._where}: sidecar lacks {err}") from err
        if isinstance(n_nodes, bool) or not isinstance(n_nodes, int) or n_nodes < 1:
            raise ControllerError(f"{self._where}: n_nodes must be a positive integer")
        if not all(isinstance(name, str) for name in names):
            raise ControllerError(f"{self._where}: feature names must be strings")
        if privileged:
            raise ControllerError(
                f"{self._where}: simulator-only (privileged) features {privileged}; "
                "no host can observe them"
            )
        ours = actions.weights_mapping()
        if mapping != ours:
            raise ControllerError(
                f"{self._where}: exported for the action mapping {mapping}, but this tierenv's "
                f"is {ours}"
            )
        quota_action = meta.get("quota_action", False)
        if not isinstance(quota_action, bool):
            raise ControllerError(f"{self._where}: quota_action must be true or false")
        quota_ours = actions.quota_mapping()
        if quota_action and meta.get("action_to_quota") != quota_ours:
            raise ControllerError(
                f"{self._where}: exported for the quota mapping {meta.get('action_to_quota')}, "
                f"but this tierenv's is {quota_ours}"
            )
        got_sha = hashlib.sha256(self.onnx_path.read_bytes()).hexdigest()
        if got_sha != expected_sha:
            raise ControllerError(
                f"{self._where}: {self.onnx_path.name} has sha256 {got_sha}, the sidecar says "
                f"{expected_sha}: the graph is not the one exported; refusing it"
            )
        return meta

    def _observation_spec(self, n_nodes: int) -> ObservationSpec:
        try:
            spec = ObservationSpec(n_nodes, self.meta["feature_groups"])
        except (FeatureError, TypeError, KeyError) as err:
            raise ControllerError(f"{self._where}: feature_groups: {err}") from err
        if not spec.host_observable:
            raise ControllerError(
                f"{self._where}: feature groups {spec.group_names} include simulator-only "
                "(privileged) features"
            )
        if spec.names != self.features:
            differ = next(
                (
                    i
                    for i, (a, b) in enumerate(zip(spec.names, self.features, strict=False))
                    if a != b
                ),
                min(len(spec.names), len(self.features)),
            )
            raise ControllerError(
                f"{self._where}: this host's features ({len(spec.names)}) differ from the "
                f"exported policy's ({len(self.features)}) from feature {differ} on"
            )
        return spec

    def _load_session(self) -> Any:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One thread: the graph is tiny, and thread pools do not survive the harness's forks.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            session = onnxruntime.InferenceSession(
                str(self.onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            raise ControllerError(f"{self._where}: onnxruntime cannot load it ({err})") from err
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ControllerError(f"{self._where}: expected one input and one output")
        n_actions = self.n_nodes + (1 if self.quota_action else 0)
        if inputs[0].shape[-1] != len(self.features) or outputs[0].shape[-1] != n_actions:
            quota = " and the quota" if self.quota_action else ""
            raise ControllerError(
                f"{self._where}: the graph maps {inputs[0].shape} to {outputs[0].shape}; the "
                f"sidecar says {len(self.features)} features and {self.n_nodes} nodes{quota}"
            )
        self._input, self._output = inputs[0].name, outputs[0].name
        return session
