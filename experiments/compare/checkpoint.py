"""The finished tasks of a ``tierenv compare`` run, kept so that running the same command
again after a kill (or a lost worker) resumes instead of starting over.

The checkpoint is a hidden folder beside the results, ``.NAME.partial/``: ``manifest.json``
with the fingerprint of everything that decides an episode's numbers (each scenario as
loaded, the seeds, the env arguments, the policies and the files they load, the code), and
one ``.npz`` file per finished task, written atomically as the task finishes (numbers and
text only: nothing there is ever unpickled). A run whose fingerprint differs discards the
folder, says what changed and starts fresh; the folder is deleted once the results are in
place. The simulator is deterministic, so a resumed run gives the numbers an uninterrupted
one would (only per-episode wall times come from the run that did the episode).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import agents
import tierenv
from experiments.compare.config import CompareConfig
from experiments.compare.episode import Trial, TrialResult
from experiments.compare.folders import real_folder
from tierenv.files import atomic_path, write_text_atomically
from tierenv.workload.scenario import load_scenario

MANIFEST = "manifest.json"
FORMAT = 1  # of the manifest and task files; another value starts fresh
# Code that decides an episode's numbers: both packages (their data files included) and the
# harness modules that build and run trials. Reporting code is not here: it runs again.
CODE_SUFFIXES = (".py", ".toml", ".json", ".yaml", ".yml", ".csv", ".cfg")
HARNESS_FILES = ("config.py", "episode.py", "runner.py", "checkpoint.py")
# A policy parameter naming a folder (a training run) is fingerprinted by its files' sizes
# and modification times, up to this many files (a mistaken "/" must not walk the disk).
MAX_POLICY_FILES = 10_000


def partial_dir(out: str | Path) -> Path:
    """The checkpoint folder of the results folder ``out`` (beside the folder a link names)."""
    out = real_folder(out)
    return out.parent / f".{out.name}.partial"


def task_key(task: Any) -> str:
    """A file name for a task: a digest of its repr (tasks are frozen dataclasses of plain
    values, so equal tasks have equal reprs)."""
    return hashlib.sha256(repr(task).encode()).hexdigest()[:24]


def code_version() -> str:
    """A digest of the code that decides episodes (see ``CODE_SUFFIXES``), and the version."""
    roots = [Path(tierenv.__file__).parent, Path(agents.__file__).parent]
    harness = [Path(__file__).parent / name for name in HARNESS_FILES]
    return f"{tierenv.__version__}:{source_digest(roots, harness)}"


def source_digest(roots: Iterable[Path], files: Iterable[Path] = ()) -> str:
    """A digest of the names and contents of the code and data files under ``roots`` (caches
    skipped) and of ``files``."""
    digest = hashlib.sha256()
    paths = [
        path
        for root in roots
        for path in Path(root).rglob("*")
        if path.suffix in CODE_SUFFIXES and "__pycache__" not in path.parts and path.is_file()
    ]
    for path in sorted(paths) + [Path(file) for file in files]:
        digest.update(f"{path.as_posix()}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def fingerprint(config: CompareConfig, tasks: Sequence[Any]) -> dict[str, str]:
    """A digest per part of what decides the tasks' numbers; names, descriptions and plot
    choices are not in it (the report is always written again)."""
    scenarios = {ref: _digest(dataclasses.asdict(load_scenario(ref))) for ref in config.scenarios}
    policies = [{"name": p.name, "kind": p.kind, "params": p.params} for p in config.policies]
    files = {
        value: _files_digest(Path(value))
        for task in tasks
        if isinstance(task, Trial)
        for value in task.policy.params.values()
        if isinstance(value, str) and value and Path(value).exists()
    }
    return {
        "format": str(FORMAT),
        "scenarios": _digest(scenarios),
        "seeds": _digest(list(config.seeds)),
        "env": _digest(config.env),
        "policies": _digest(policies),
        "policy files": _digest(files),
        "upper bound": _digest(config.upper_bound),
        "code": code_version(),
    }


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _plain(value: Any) -> Any:
    """A JSON-able stand-in for what ``json`` cannot write (arrays by their bytes)."""
    if isinstance(value, np.ndarray):
        return [str(value.dtype), list(value.shape), hashlib.sha256(value.tobytes()).hexdigest()]
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(map(repr, value))
    if isinstance(value, Path):
        return str(value)
    # Anything else by its repr: one holding an address changes every run, which starts
    # fresh (never wrong, only slower).
    return repr(value)


def _files_digest(path: Path) -> list[Any]:
    """Sizes and modification times of a policy's file (and its siblings of the same stem,
    e.g. an ONNX graph's JSON sidecar) or of the files of its folder (a training run)."""
    if path.is_dir():
        entries = []
        for top, dirs, names in os.walk(path):
            dirs.sort()
            for name in sorted(names):
                entries.append(Path(top) / name)
                if len(entries) >= MAX_POLICY_FILES:
                    break
            if len(entries) >= MAX_POLICY_FILES:
                break
    else:
        entries = sorted(p for p in path.parent.glob(f"{path.stem}.*") if p.is_file())
    result = []
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):  # gone since the walk
            stat = entry.stat()
            result.append([entry.as_posix(), stat.st_size, stat.st_mtime_ns])
    return result


class Checkpoint:
    """Finished tasks kept in ``folder`` (``partial_dir(out)``), for one config's tasks."""

    def __init__(self, folder: str | Path, fresh: bool = False) -> None:
        self.folder = Path(folder)
        self.fresh = fresh  # discard whatever the folder holds

    def open(self, config: CompareConfig, tasks: Sequence[Any]) -> dict[int, Any]:
        """Start or resume: returns the results of the tasks (by index) finished by an
        earlier run of the same fingerprint; a different fingerprint discards them."""
        parts = fingerprint(config, tasks)
        manifest = self._read_manifest()
        if self.fresh or manifest is None or manifest.get("fingerprint") != parts:
            if manifest is not None and self.fresh:
                _say(f"{self.folder}: discarding the finished episodes kept there (fresh start)")
            elif manifest is not None:
                old = manifest.get("fingerprint")
                changed = (
                    sorted(key for key in parts if old.get(key) != parts[key])
                    if isinstance(old, dict)
                    else ["format"]
                )
                _say(
                    f"{self.folder}: the finished episodes kept there are from a different "
                    f"run (changed: {', '.join(changed)}); discarding them and starting fresh"
                )
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True, exist_ok=True)
            manifest = {"fingerprint": parts, "config": config.source, "tasks": len(tasks)}
            write_text_atomically(self.folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")
            return {}
        done = {}
        for index, task in enumerate(tasks):
            result = self._load(task)
            if result is not None:
                done[index] = result
        if done:
            _say(
                f"{config.name}: resuming: {len(done)} of {len(tasks)} tasks finished in an "
                f"earlier run (kept in {self.folder}; --fresh starts over)"
            )
        return done

    def save(self, task: Any, result: Any) -> None:
        """Keep a finished task (atomically: a kill leaves the file whole or absent)."""
        arrays: dict[str, np.ndarray] = {"task": np.array(repr(task))}
        if isinstance(result, TrialResult):
            arrays["label"] = np.array(result.label)
            arrays["wall_s"] = np.array(result.wall_s)
            for name, values in result.steps.items():
                arrays[f"step.{name}"] = np.asarray(values)
        else:  # a bound: the per-interval values
            arrays["bound"] = np.asarray(result)
        with atomic_path(self.folder / f"{task_key(task)}.npz", suffix=".npz") as tmp:
            # allow_pickle: numpy's default, spelled out so that mypy does not match it to
            # **arrays
            np.savez(tmp, allow_pickle=True, **arrays)

    def discard(self) -> None:
        """Delete the checkpoint (its results are in place)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _read_manifest(self) -> dict[str, Any] | None:
        try:
            manifest = json.loads((self.folder / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) else None

    def _load(self, task: Any) -> Any:
        """The kept result of ``task``, or None (missing, damaged or another task's)."""
        path = self.folder / f"{task_key(task)}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["task"]) != repr(task):
                    return None
                if "bound" in data:
                    return data["bound"]
                steps = {
                    name.removeprefix("step."): data[name]
                    for name in data.files
                    if name.startswith("step.")
                }
                return TrialResult(task, str(data["label"]), float(data["wall_s"]), steps)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
