"""The weighted-interleave weights in ``/sys/kernel/mm/mempolicy/weighted_interleave/``.

Kernel rules followed (mm/mempolicy.c, ``reduce_interleave_weights`` and the sysfs handlers;
Documentation/ABI/testing/sysfs-kernel-mm-mempolicy-weighted-interleave):

* ``nodeN`` holds a weight 1..255 for each node with memory; nodes are discovered from the
  directory, never assumed.
* The auto switch (6.16+) is named ``auto`` or, on kernels that ``#define auto __auto_type``
  (6.18 here), ``__auto_type``; before 6.16 it does not exist. It reads ``true``/``false``.
* A valid ``nodeN`` write itself switches the system to manual mode, so weights are written
  directly; if a kernel still reads auto afterwards, ``false`` is written explicitly.
* Writing ``true`` recomputes the weights from bandwidth data, or fails with ENODEV when there
  is none; writing ``false`` keeps the current table.

Weights are written as one transaction: on any failure the nodes already written get their
original weight back (and auto mode is re-enabled if it was on), then the error is raised.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tierenv.host.sysfs import SysfsError, SysfsRoot
from tierenv.memory.interleave import check_weights

WI_DIR = "kernel/mm/mempolicy/weighted_interleave"
AUTO_NAMES = ("auto", "__auto_type")
_NODE = re.compile(r"node(\d+)")
_TRUE = {"true", "y", "yes", "1", "on"}
_FALSE = {"false", "n", "no", "0", "off"}


class InterleaveWriteError(RuntimeError):
    """Writing the weights failed; ``restored`` says whether the original state is back."""

    def __init__(self, message: str, restored: bool) -> None:
        super().__init__(message)
        self.restored = restored


@dataclass(frozen=True)
class InterleaveState:
    """A snapshot: weight per node id and the auto switch (None if the kernel has none)."""

    weights: Mapping[int, int]
    auto: bool | None


def parse_bool(text: str) -> bool:
    """``kstrtobool``-style reading of ``true``/``false``/``Y``/``N``/``1``/``0``."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"not a boolean: {text!r}")


class WeightedInterleave:
    """Reads and writes the global weighted-interleave table under ``root``."""

    def __init__(self, root: SysfsRoot) -> None:
        self.root = root

    @property
    def present(self) -> bool:
        """Whether the kernel has weighted interleave (6.9+)."""
        return self.root.exists(WI_DIR)

    def nodes(self) -> list[int]:
        """Node ids with a weight file, ascending."""
        names = self.root.listdir(WI_DIR)
        return sorted(int(m.group(1)) for name in names if (m := _NODE.fullmatch(name)))

    def auto_name(self) -> str | None:
        """``auto``, ``__auto_type`` or None (kernel before 6.16)."""
        names = set(self.root.listdir(WI_DIR))
        return next((name for name in AUTO_NAMES if name in names), None)

    def read_auto(self) -> bool | None:
        name = self.auto_name()
        return None if name is None else parse_bool(self.root.read(f"{WI_DIR}/{name}"))

    def read_weights(self) -> dict[int, int]:
        return {node: self.root.read_int(f"{WI_DIR}/node{node}") for node in self.nodes()}

    def snapshot(self) -> InterleaveState:
        return InterleaveState(weights=self.read_weights(), auto=self.read_auto())

    def write_weights(
        self, weights: Mapping[int, int] | Sequence[int] | np.ndarray
    ) -> InterleaveState:
        """Set every node's weight (a mapping by node id, or one weight per node in ascending
        node order) as one transaction; returns the original state for :meth:`restore`."""
        original = self.snapshot()
        target = self._target(weights, sorted(original.weights))
        written: list[int] = []
        try:
            for node, weight in target.items():
                self.root.write(f"{WI_DIR}/node{node}", weight)
                written.append(node)
            name = self.auto_name()
            if name is not None and self.read_auto():
                # The kernel leaves auto mode on a node write; this covers a kernel that does not.
                self.root.write(f"{WI_DIR}/{name}", "false")
        except (SysfsError, ValueError) as error:
            note, restored = self._undo(original, written)
            raise InterleaveWriteError(
                f"weighted-interleave weights {target} were not applied: {error}. {note}",
                restored,
            ) from error
        return original

    def restore(self, original: InterleaveState) -> None:
        """Put back a snapshot taken by :meth:`snapshot` or returned by :meth:`write_weights`
        (daemon shutdown). Raises :class:`InterleaveWriteError` if that is impossible."""
        current = self.read_weights()
        changed = [n for n, w in original.weights.items() if current.get(n) != w]
        note, restored = self._undo(original, changed)
        if not restored:
            raise InterleaveWriteError(f"could not restore weighted interleave: {note}", False)

    def _target(
        self, weights: Mapping[int, int] | Sequence[int] | np.ndarray, nodes: list[int]
    ) -> dict[int, int]:
        if isinstance(weights, Mapping):
            given = sorted(int(node) for node in weights)
            if given != nodes:
                raise ValueError(
                    f"weights given for nodes {given}, but this kernel has nodes {nodes}; "
                    "give one weight for every node"
                )
            values = [weights[node] for node in nodes]
        else:
            values = list(weights)
            if len(values) != len(nodes):
                raise ValueError(
                    f"{len(values)} weights given for the {len(nodes)} nodes {nodes}; "
                    "give one per node, in ascending node order"
                )
        checked = check_weights(values, len(values))  # 1..255 as the kernel requires (6.16+)
        return {node: int(weight) for node, weight in zip(nodes, checked, strict=True)}

    def _undo(self, original: InterleaveState, nodes: list[int]) -> tuple[str, bool]:
        """Write back the original weights of ``nodes`` (reverse order) and auto mode."""
        failures: list[str] = []
        for node in reversed(nodes):
            try:
                self.root.write(f"{WI_DIR}/node{node}", original.weights[node])
            except SysfsError as error:
                failures.append(str(error))
        auto_note = ""
        name = self.auto_name()
        if name is not None and original.auto is not None:
            try:
                if self.read_auto() != original.auto:
                    self.root.write(f"{WI_DIR}/{name}", "true" if original.auto else "false")
            except SysfsError as error:
                if error.errno == errno.ENODEV and not failures:
                    # No bandwidth data: auto mode used the weights just restored (all 1).
                    auto_note = " Auto mode could not be re-enabled (ENODEV, no bandwidth data)."
                else:
                    failures.append(str(error))
        if failures:
            return "Restoring the original weights failed too: " + "; ".join(failures), False
        restored = ", ".join(f"node{n}={original.weights[n]}" for n in nodes) or "nothing"
        return f"Restored original weights ({restored}).{auto_note}", True
