"""A trained stable-baselines3 policy behind the ``Controller`` interface (kind ``sb3``), so
the harness compares learned policies with the baselines on equal terms: the same
measurements in, the same integer weights out, through ``env.step_weights``.

A training run directory holds ``model.zip`` (``model.save``), ``vecnormalize.pkl``
(``VecNormalize.save``, when observations were normalised) and ``run.json`` (the algorithm,
seed, node count, feature names and groups, ``normalize_observation``, ``quota_action``, ...).
The policy rebuilds the env's observation from the measurements with the run's
``ObservationSpec``, normalises it exactly as ``VecNormalize`` did in training, asks the model
and maps its action with the env's own ``action_to_weights``; so a run acts here exactly as
it did in ``env.step``.

A ``quota_action`` run's last action value is the DAMOS quota (``action_to_quota``), which
the policy asks for through ``damos_quota``. Refused, with errors naming the run: policies on
simulator-only (privileged) features, since they could never act on a host; hosts whose node
count or feature names differ from the run's.

Trust: ``model.zip`` is loaded by stable-baselines3, which unpickles parts of it (cloudpickle):
load runs you trust only, and never on a host as root (the daemon refuses this kind; it runs
exported ONNX/JSON pairs). ``vecnormalize.pkl`` is read with a restricted unpickler that
builds numpy arrays and plain records only and refuses any other callable, so a crafted one
cannot run code.
"""

from __future__ import annotations

import importlib
import json
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
from tierenv.contracts.actions import action_to_quota, action_to_weights
from tierenv.contracts.features import FeatureError, ObservationSpec, groups_of
from tierenv.contracts.measurements import Measurements

MODEL_FILE = "model.zip"
RUN_FILE = "run.json"
NORMALIZER_FILE = "vecnormalize.pkl"
ALGORITHMS = ("PPO", "SAC", "RecurrentPPO")
RECURRENT = ("RecurrentPPO",)
_REQUIRED_KEYS = (
    "algorithm",
    "seed",
    "n_nodes",
    "features",
    "feature_groups",
    "normalize_observation",
)


@dataclass(frozen=True)
class RunFiles:
    """Where a run's files are: ``path`` as given, the run directory and its files."""

    path: Path
    root: Path
    model: Path
    run_json: Path
    normalizer: Path  # may be absent (no observation normalisation)

    @property
    def label(self) -> str:
        """The run's directory name (with the experiment's, for the trainer's ``seed_N``
        directories), plus the model file when it is not ``model.zip``."""
        root = self.root.resolve()
        name = f"{root.parent.name}/{root.name}" if root.name.startswith("seed_") else root.name
        return name if self.model.name == MODEL_FILE else f"{name}/{self.model.name}"


def locate_run(path: str | Path) -> RunFiles:
    """The files of the run at ``path`` (a run directory, or a model ``.zip`` with
    ``run.json`` beside it); missing files raise ``ControllerError``."""
    given = Path(path).expanduser()
    if given.is_dir():
        root, model = given, given / MODEL_FILE
    elif given.suffix == ".zip":
        root, model = given.parent, given
    elif not given.exists():
        raise ControllerError(f"sb3 policy {given}: no such run directory or model file")
    else:
        raise ControllerError(
            f"sb3 policy {given}: expected a run directory or a model .zip, got another file"
        )
    if not model.is_file():
        raise ControllerError(f"sb3 policy {given}: model file {model} is missing")
    run_json = root / RUN_FILE
    if not run_json.is_file():
        raise ControllerError(
            f"sb3 policy {given}: {RUN_FILE} is missing from {root} (it says which algorithm "
            "and features the model was trained with)"
        )
    return RunFiles(given, root, model, run_json, root / NORMALIZER_FILE)


@dataclass(frozen=True)
class ObservationNormalizer:
    """``VecNormalize``'s observation normalisation with frozen statistics."""

    mean: np.ndarray
    var: np.ndarray
    clip_obs: float
    epsilon: float

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        # The same expression and casts as VecNormalize.normalize_obs, so the model sees
        # bit-identical inputs.
        scaled = (observation - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)


class _Record:
    """Stands in for a class of a ``VecNormalize`` pickle: takes any constructor arguments
    and keeps its state as attributes; no code of the real class runs."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Record:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        if (
            isinstance(state, tuple)
            and len(state) == 2
            and all(part is None or isinstance(part, dict) for part in state)
        ):  # (dict, slots) of __reduce_ex__
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):  # other states (random generators') are not needed
            self.__dict__.update({str(k): v for k, v in state.items()})


def _record(*args: Any, **kwargs: Any) -> _Record:
    return _Record()


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The numpy callables a pickled array needs: they build arrays, dtypes and scalars."""
    core = importlib.import_module(
        "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
    )
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray}
    allowed[("numpy", "dtype")] = np.dtype
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = core._reconstruct
        allowed[(module, "scalar")] = core.scalar
    return allowed


# Everything else a VecNormalize pickle holds becomes a plain record: its statistics, spaces
# and random generators (whose state is never used here).
_RECORDS = {
    ("stable_baselines3.common.vec_env.vec_normalize", "VecNormalize"),
    ("stable_baselines3.common.running_mean_std", "RunningMeanStd"),
    ("gymnasium.spaces.box", "Box"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pcg64", "PCG64"),
    ("numpy.random._mt19937", "MT19937"),
    ("numpy.random.bit_generator", "SeedSequence"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
}


class _StatisticsUnpickler(pickle.Unpickler):
    """Unpickles a ``VecNormalize.save`` file without running code from it: numpy's array
    constructors are allowed, the known SB3/gymnasium classes become ``_Record``s, and any
    other global (``os.system``, ``builtins.eval``, ...) is refused."""

    numpy_globals = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.numpy_globals:
            return self.numpy_globals[(module, name)]
        if (module, name) in _RECORDS:
            return _Record if name[:1].isupper() else _record
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a VecNormalize statistics file holds numpy "
            "arrays and SB3's statistics only, so this one was not written by VecNormalize.save"
        )


def load_normalizer(path: str | Path) -> ObservationNormalizer | None:
    """The observation statistics of a ``VecNormalize.save`` file, read without a live VecEnv
    and without running code from the file (``_StatisticsUnpickler``); ``None`` when it did
    not normalise observations. Raises ``ControllerError``."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            saved = _StatisticsUnpickler(file).load()
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
        raise ControllerError(f"{path}: cannot read the VecNormalize statistics ({err})") from err
    except (TypeError, ValueError, IndexError, KeyError) as err:  # a malformed stream
        raise ControllerError(f"{path}: cannot read the VecNormalize statistics ({err})") from err
    if not getattr(saved, "norm_obs", False):
        return None
    obs_rms = getattr(saved, "obs_rms", None)
    if (
        obs_rms is None  # (has no mean: the next check; spelled out for the type checker)
        or isinstance(obs_rms, dict)
        or not hasattr(obs_rms, "mean")
        or not hasattr(obs_rms, "var")
    ):
        raise ControllerError(
            f"{path}: expected one observation mean and variance (a Box observation), "
            f"got {type(obs_rms).__name__}"
        )
    return ObservationNormalizer(
        mean=np.asarray(obs_rms.mean, dtype=np.float64),
        var=np.asarray(obs_rms.var, dtype=np.float64),
        clip_obs=float(saved.clip_obs),
        epsilon=float(saved.epsilon),
    )


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread, then restore its setting. A policy this small gains nothing
    from threads, and an OpenMP thread team started in the harness's parent process (which
    builds every controller once while planning) deadlocks its forked worker processes the
    first time they use torch (libgomp does not survive ``fork``); one thread never starts a
    team, in the parent or in a worker."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _algorithm_class(name: str, where: str) -> Any:
    if name == "PPO":
        from stable_baselines3 import PPO

        return PPO
    if name == "SAC":
        from stable_baselines3 import SAC

        return SAC
    if name == "RecurrentPPO":
        try:
            from sb3_contrib import RecurrentPPO
        except ImportError as err:
            raise ControllerError(
                f"{where}: RecurrentPPO needs sb3-contrib (pip install sb3-contrib)"
            ) from err
        return RecurrentPPO
    raise ControllerError(f"{where}: unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}")


class LearnedPolicy(Controller):
    """A trained SB3 policy (PPO, SAC or RecurrentPPO) acting from the env's observations.

    ``path``: a run directory or a model ``.zip`` with ``run.json`` (and
    ``vecnormalize.pkl``) beside it. ``deterministic``: act with the policy's mean action;
    when false, actions are sampled from a generator seeded by the episode seed and the step,
    so stochastic trials still give the same numbers wherever they run.
    Everything that can be checked without a host is checked here, so a bad run fails when
    an experiment is planned rather than in the middle of it.
    """

    kind: ClassVar[str] = "sb3"

    def __init__(self, path: str | Path, deterministic: bool = True) -> None:
        if not isinstance(path, str | Path) or not str(path):
            raise ControllerError(f"sb3: parameter 'path' must be a run directory, got {path!r}")
        if not isinstance(deterministic, bool):
            raise ControllerError(
                f"sb3: parameter 'deterministic' must be true or false, got {deterministic!r}"
            )
        self.files = locate_run(path)
        self.deterministic = deterministic
        self._where = f"sb3 policy {self.files.path}"
        self.run = self._read_run()
        self.algorithm: str = self.run["algorithm"]
        self.n_nodes: int = self.run["n_nodes"]
        self.quota_action: bool = self.run.get("quota_action", False)
        self.features: tuple[str, ...] = tuple(self.run["features"])
        self.spec = self._observation_spec(self.n_nodes, "")
        self.normalizer = self._load_normalizer()
        self.model = self._load_model()
        self.recurrent = self.algorithm in RECURRENT

    # ------------------------------------------------------------------ Controller API
    def needs(self) -> HostNeeds:
        """The node count the policy was made for and the feature groups it observes."""
        return HostNeeds(self.n_nodes, self.spec.group_names)

    def reset(self, context: ControlContext) -> None:
        super().reset(context)
        require_node_count(self._where, "trained on", self.n_nodes, context.nodes)
        host_nodes = context.nodes.n_nodes
        self.spec = self._observation_spec(host_nodes, f" on this {host_nodes}-node host")
        self._lstm_state: tuple[np.ndarray, ...] | None = None
        self._episode_start = True
        self._step = 0
        self._quota: int | None = None
        self._seed = 0 if context.seed is None else int(context.seed)
        self.last_observation: np.ndarray | None = None

    def decide(self, measurements: Measurements) -> np.ndarray:
        # truth=None: host-observable features never read it (privileged runs are refused).
        observation = self.spec.build(measurements, None, self.context.nodes)
        if self.normalizer is not None:
            observation = self.normalizer(observation)
        self.last_observation = observation  # what the model saw (for checks and debugging)
        action = self._predict(observation[None, :])
        self._episode_start = False
        self._step += 1
        if self.quota_action:
            self._quota = action_to_quota(float(action[0][self.n_nodes]))
        return action_to_weights(action[0][: self.n_nodes], self.n_nodes)

    def damos_quota(self) -> int | None:
        return self._quota

    def describe(self) -> str:
        mode = "" if self.deterministic else " stochastic"
        return f"{self.algorithm} seed {self.run['seed']}{mode} ({self.files.label})"

    # ---------------------------------------------------------------------- internals
    def _predict(self, batch: np.ndarray) -> np.ndarray:
        import torch

        kwargs = {"state": self._lstm_state, "episode_start": np.array([self._episode_start])}
        with one_torch_thread():
            if self.deterministic:
                action, state = self.model.predict(batch, deterministic=True, **kwargs)
            else:
                # Sample from a private stream seeded by (episode seed, step): the same numbers
                # in any process, and the global torch RNG left untouched.
                step_seed = np.random.SeedSequence([self._seed, self._step]).generate_state(1)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(int(step_seed[0]))
                    action, state = self.model.predict(batch, deterministic=False, **kwargs)
        if self.recurrent:
            self._lstm_state = state
        return np.asarray(action)

    def _read_run(self) -> dict[str, Any]:
        try:
            run = json.loads(self.files.run_json.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ControllerError(f"{self._where}: cannot read {RUN_FILE} ({err})") from err
        if not isinstance(run, dict):
            raise ControllerError(f"{self._where}: {RUN_FILE} is not a mapping")
        missing = [key for key in _REQUIRED_KEYS if key not in run]
        if missing:
            raise ControllerError(f"{self._where}: {RUN_FILE} lacks {', '.join(missing)}")
        if run["algorithm"] not in ALGORITHMS:
            raise ControllerError(
                f"{self._where}: unknown algorithm {run['algorithm']!r} in {RUN_FILE}; "
                f"known: {', '.join(ALGORITHMS)}"
            )
        n_nodes = run["n_nodes"]
        if isinstance(n_nodes, bool) or not isinstance(n_nodes, int) or n_nodes < 1:
            raise ControllerError(f"{self._where}: n_nodes must be a positive integer")
        features = run["features"]
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise ControllerError(f"{self._where}: features must be a list of feature names")
        if not isinstance(run.get("quota_action", False), bool):
            raise ControllerError(f"{self._where}: quota_action must be true or false")
        return run

    def _observation_spec(self, n_nodes: int, where: str) -> ObservationSpec:
        """The run's observation spec, checked: its names are the run's and a host can read
        every feature."""
        # Rebuilt from the run's feature names, not its feature set's name: "default" gains
        # groups over releases, and a policy keeps observing what it was trained on.
        try:
            spec = ObservationSpec(n_nodes, groups_of(self.features))
        except (FeatureError, TypeError) as err:
            raise ControllerError(f"{self._where}: features: {err}") from err
        if not spec.host_observable:
            simulator_only = [g.name for g in spec.groups if not g.host_observable]
            raise ControllerError(
                f"{self._where}: trained on simulator-only (privileged) features "
                f"({', '.join(simulator_only)}), which no host can observe; sb3 policies "
                "must use host-observable features"
            )
        if spec.names != self.features:
            raise ControllerError(
                f"{self._where}: the features of the run's groups{where} "
                f"differ from its feature list: {_first_difference(spec.names, self.features)}"
            )
        return spec

    def _load_normalizer(self) -> ObservationNormalizer | None:
        wanted = bool(self.run["normalize_observation"])
        if not self.files.normalizer.is_file():
            if wanted:
                raise ControllerError(
                    f"{self._where}: {NORMALIZER_FILE} is missing from {self.files.root}, but "
                    "the run normalised observations (normalize_observation: true)"
                )
            return None
        normalizer = load_normalizer(self.files.normalizer)
        if (normalizer is not None) != wanted:
            raise ControllerError(
                f"{self._where}: {NORMALIZER_FILE} "
                f"{'normalises' if normalizer else 'does not normalise'} observations but "
                f"{RUN_FILE} says normalize_observation: {str(wanted).lower()}"
            )
        if normalizer is not None and normalizer.mean.shape != (len(self.features),):
            raise ControllerError(
                f"{self._where}: {NORMALIZER_FILE} has statistics for "
                f"{normalizer.mean.shape} observations, the run has {len(self.features)} features"
            )
        return normalizer

    def _load_model(self) -> Any:
        cls = _algorithm_class(self.algorithm, self._where)
        try:
            with one_torch_thread():
                model = cls.load(self.files.model, device="cpu")
        except Exception as err:  # a corrupt or foreign zip fails in many ways
            raise ControllerError(
                f"{self._where}: cannot load {self.files.model.name} as {self.algorithm} ({err})"
            ) from err
        obs_shape, action_shape = model.observation_space.shape, model.action_space.shape
        n_actions = self.n_nodes + (1 if self.quota_action else 0)
        if obs_shape != (len(self.features),) or action_shape != (n_actions,):
            quota = " and the quota" if self.quota_action else ""
            raise ControllerError(
                f"{self._where}: the model observes {obs_shape} and acts {action_shape}; the "
                f"run says {len(self.features)} features and {self.n_nodes} nodes{quota}"
            )
        return model


def _first_difference(got: tuple[str, ...], want: tuple[str, ...]) -> str:
    if len(got) != len(want):
        extra = sorted(set(got) - set(want))
        lacking = sorted(set(want) - set(got))
        detail = "; ".join(
            part
            for part in (
                f"extra {', '.join(extra)}" if extra else "",
                f"missing {', '.join(lacking)}" if lacking else "",
            )
            if part
        )
        return f"{len(got)} features instead of {len(want)}" + (f" ({detail})" if detail else "")
    index = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
    return f"feature {index} is {got[index]!r}, the run has {want[index]!r}"
