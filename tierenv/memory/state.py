"""Physical and virtual memory of a simulated host, page by page.

Nodes own consecutive physical frames (node 0 first) starting at ``phys_base``; each node keeps
its free frames in a stack, so a fresh node hands out its lowest frames first and freed frames
are reused first: physical fragmentation emerges as it does on a real host. Applications own
page-aligned VMAs; their pages are numbered in address order, and a page's interleave index is
``vaddr // page_size`` (for anonymous private mappings the kernel sets vm_pgoff to
``vm_start >> PAGE_SHIFT``, so ilx is the virtual folio number).

Allocation follows MPOL_WEIGHTED_INTERLEAVE; migration follows DAMOS migrate_hot/cold
(mm/damon/vaddr.c ``damos_va_migrate``, mm/damon/ops-common.c ``damon_migrate_pages``): pages
in ascending address order, no reclaim on a full target (that page fails), pages already on
their target and requests to invalid or memory-less nodes skipped. The per-page loops are
compiled (``kernels.py``); the reference (``reference.py``) runs with ``engine="reference"``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from tierenv.memory import kernels, reference
from tierenv.memory.interleave import check_weights, mask_nodes

DEFAULT_PAGE_SIZE = 2 << 20  # a THP: the simulator tracks 2 MiB folios by default
MIN_PAGE_SIZE = 4096
DEFAULT_PHYS_BASE = 4 << 30  # where x86 hosts usually resume RAM above the PCI hole
MAX_NODES = 1024  # the kernel's MAX_NUMNODES at NODES_SHIFT = 10
MAX_DEST_WEIGHT = 2**32 - 1  # DAMOS dest weights are u32
_U32_NOTE = "DAMOS dest weights are integers 0..4294967295"


class OutOfMemory(RuntimeError):  # noqa: N818 - named like the kernel condition (OOM)
    """No allowed node has a free frame for some of the requested pages."""


@dataclass(frozen=True, eq=False)  # eq would compare arrays ambiguously
class MigrationResult:
    """What one migration request did (pages of ``page_size`` bytes)."""

    moved_pages: int
    failed_pages: int  # target node had no free frame
    moved_matrix: np.ndarray  # int64 (nodes, nodes): pages moved from row node to column node
    page_size: int

    @property
    def moved_bytes(self) -> int:
        return self.moved_pages * self.page_size


class MemoryState:
    """Frames of every node, pages of every application, and where each page lives.

    Counters ``pgmigrate_success``/``pgmigrate_fail`` count pages of ``page_size`` (multiply
    by ``page_size // 4096`` for /proc/vmstat's base pages). Accessors of per-page and
    per-frame tables return read-only views of the live tables: they follow later changes
    and may go stale after ``add_app`` (which can move the tables); copy them to keep them.
    """

    def __init__(
        self,
        capacity_bytes: Sequence[int],
        page_size: int = DEFAULT_PAGE_SIZE,
        phys_base: int = DEFAULT_PHYS_BASE,
        engine: str = "auto",
    ):
        if not _is_int(page_size) or page_size < MIN_PAGE_SIZE or page_size & (page_size - 1):
            raise ValueError(f"page_size must be a power of two >= 4096, got {page_size!r}")
        if not _is_int(phys_base) or phys_base < 0 or phys_base % page_size:
            raise ValueError(
                f"phys_base must be a non-negative multiple of page_size {page_size}, "
                f"got {phys_base!r}"
            )
        if not 1 <= len(capacity_bytes) <= MAX_NODES:
            raise ValueError(f"need 1..{MAX_NODES} nodes, got {len(capacity_bytes)}")
        for node, size in enumerate(capacity_bytes):
            if not _is_int(size) or size < 0:
                raise ValueError(f"capacity of node {node} is {size!r}; need bytes >= 0")
        if engine not in ("auto", "numba", "reference"):
            raise ValueError(f"engine must be 'auto', 'numba' or 'reference', got {engine!r}")
        if engine == "numba" and not kernels.AVAILABLE:
            raise ValueError("engine='numba' needs numba installed")
        self._engine = engine
        self._ops = _engine_ops(engine)
        self._page_size = int(page_size)
        self._shift = self._page_size.bit_length() - 1
        self._phys_base = int(phys_base)
        capacity = np.array([int(c) // page_size for c in capacity_bytes], dtype=np.int64)
        if not capacity.any():
            raise ValueError(
                f"no node holds a page of {page_size} bytes: capacities {list(capacity_bytes)}"
            )
        n_nodes = capacity.size
        self._capacity = capacity
        self._node_first = np.concatenate([[0], np.cumsum(capacity)]).astype(np.int64)
        n_frames = int(self._node_first[-1])
        self._frame_node = np.repeat(np.arange(n_nodes, dtype=np.int16), capacity)
        self._frame_app = np.full(n_frames, -1, dtype=np.int64)
        self._frame_page = np.full(n_frames, -1, dtype=np.int64)
        # Each node's stack holds its frames in descending order: the lowest is on top.
        self._free = np.concatenate(
            [
                np.arange(self._node_first[i + 1] - 1, self._node_first[i] - 1, -1)
                for i in range(n_nodes)
            ]
        ).astype(np.int64)
        self._free_top = capacity.copy()
        self._memory_nodes = np.flatnonzero(capacity > 0).astype(np.int64)
        # Pages of all applications in one table (app a at app_base[a]..), so that compiled
        # paddr walks reach any owner; ids are never reused.
        self._page_node = np.full(0, -1, dtype=np.int16)
        self._page_frame = np.full(0, -1, dtype=np.int64)
        self._page_vaddr = np.zeros(0, dtype=np.int64)
        self._pages_used = 0
        self._app_base = np.zeros(0, dtype=np.int64)
        self._app_npages = np.zeros(0, dtype=np.int64)
        self._app_resident = np.zeros((0, n_nodes), dtype=np.int64)
        self._vmas: dict[int, tuple[tuple[int, int], ...]] = {}
        self._next_app = 0
        self._success = 0
        self._fail = 0
        self._migrated = np.zeros((n_nodes, n_nodes), dtype=np.int64)
        # Change counters, so that observers (DAMON's sampling index) rebuild only when needed
        self._residency_generation = 0  # a page became resident or not, a mapping changed
        self._placement_generation = 0  # ... or a page moved to another frame

    # A module cannot be pickled: pickle the engine's name and look its kernels up again.
    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        del state["_ops"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._ops = _engine_ops(str(state["_engine"]))

    @property
    def residency_generation(self) -> int:
        """Changes whenever pages are allocated or freed or mappings are added or removed."""
        return self._residency_generation

    @property
    def placement_generation(self) -> int:
        """Changes whenever the residency generation does or a page is migrated."""
        return self._placement_generation

    def _changed(self, residency: bool) -> None:
        self._placement_generation += 1
        if residency:
            self._residency_generation += 1

    # ---- layout ---------------------------------------------------------------------------

    @property
    def n_nodes(self) -> int:
        return self._capacity.size

    @property
    def page_size(self) -> int:
        return self._page_size

    @property
    def phys_base(self) -> int:
        return self._phys_base

    @property
    def capacity_pages(self) -> np.ndarray:
        return self._capacity.copy()

    @property
    def free_pages(self) -> np.ndarray:
        return self._free_top.copy()

    @property
    def used_pages(self) -> np.ndarray:
        return self._capacity - self._free_top

    @property
    def node_has_memory(self) -> np.ndarray:
        return self._capacity > 0

    @property
    def n_frames(self) -> int:
        return self._frame_app.size

    @property
    def node_of_frame(self) -> np.ndarray:
        return _read_only(self._frame_node)

    @property
    def frame_app(self) -> np.ndarray:
        """Owner application of each frame (-1 free)."""
        return _read_only(self._frame_app)

    @property
    def frame_page(self) -> np.ndarray:
        """Owner's page index of each frame (-1 free)."""
        return _read_only(self._frame_page)

    def node_phys_range(self, node: int) -> tuple[int, int]:
        """[start, end) physical bytes of ``node`` (empty for a memory-less node)."""
        self._check_node(node)
        first, last = self._node_first[node], self._node_first[node + 1]
        return (
            self._phys_base + int(first) * self._page_size,
            self._phys_base + int(last) * self._page_size,
        )

    # ---- applications ---------------------------------------------------------------------

    @property
    def app_ids(self) -> tuple[int, ...]:
        return tuple(self._vmas)

    def add_app(self, vmas: Sequence[tuple[int, int]]) -> int:
        """Register an application's VMAs ((start, size) bytes, page-aligned); returns its id."""
        spans = self._checked_vmas(vmas)
        vaddr = np.concatenate(
            [np.arange(s, s + n, self._page_size, dtype=np.int64) for s, n in spans]
        )
        app = self._next_app
        self._reserve(app, vaddr.size)
        base = self._pages_used
        self._page_vaddr[base : base + vaddr.size] = vaddr
        self._page_node[base : base + vaddr.size] = -1
        self._page_frame[base : base + vaddr.size] = -1
        self._app_base[app] = base
        self._app_npages[app] = vaddr.size
        self._pages_used += vaddr.size
        self._vmas[app] = spans
        self._next_app += 1
        self._changed(residency=True)
        return app

    def remove_app(self, app: int) -> None:
        """Free all of ``app``'s pages and forget it (its id is not reused)."""
        span = self._app_slice(app)
        self.free(app, np.arange(span.stop - span.start))
        del self._vmas[app]
        self._app_npages[app] = 0
        self._changed(residency=True)

    def app_vmas(self, app: int) -> tuple[tuple[int, int], ...]:
        """(start, size) of each VMA, ascending."""
        self._app_slice(app)
        return self._vmas[app]

    def app_page_vaddr(self, app: int) -> np.ndarray:
        """Virtual address of each page (ascending)."""
        return _read_only(self._page_vaddr[self._app_slice(app)])

    def node_of_page(self, app: int) -> np.ndarray:
        """Node of each page (int16, -1 not resident)."""
        return _read_only(self._page_node[self._app_slice(app)])

    def frame_of_page(self, app: int) -> np.ndarray:
        """Frame of each page (-1 not resident)."""
        return _read_only(self._page_frame[self._app_slice(app)])

    def resident_pages(self, app: int) -> np.ndarray:
        """Resident pages per node (what numa_maps' N<node>= fields add up to)."""
        self._app_slice(app)
        return self._app_resident[app].copy()

    def resident_bytes(self, app: int) -> np.ndarray:
        return self.resident_pages(app) * self._page_size

    def resident_pages_in_ranges(
        self, app: int, starts: np.ndarray, ends: np.ndarray
    ) -> np.ndarray:
        """(ranges, nodes) resident pages of ``app`` whose address lies in [start, end): what
        a host learns by asking move_pages(2) where the pages of each DAMON region are."""
        span = self._app_slice(app)
        starts = np.ascontiguousarray(starts, dtype=np.int64)
        counts = np.zeros((starts.size, self.n_nodes), dtype=np.int64)
        self._ops.count_in_ranges(
            self._page_vaddr[span],
            self._page_node[span],
            starts,
            np.ascontiguousarray(ends, dtype=np.int64),
            counts,
        )
        return counts

    def access_split(
        self, app: int, shares: np.ndarray, hot: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(nodes,) sums of ``shares`` (one per page of ``app``) over its resident pages on
        each node, and (nodes,) its resident pages flagged in ``hot`` on each node."""
        span = self._app_slice(app)
        per_node = np.zeros(self.n_nodes)
        hot_pages = np.zeros(self.n_nodes, dtype=np.int64)
        self._ops.access_split(
            self._page_node[span],
            np.ascontiguousarray(shares, dtype=np.float64),
            np.ascontiguousarray(hot, dtype=np.bool_),
            per_node,
            hot_pages,
        )
        return per_node, hot_pages

    # ---- allocation -----------------------------------------------------------------------

    def allocate(
        self,
        app: int,
        pages: np.ndarray | Sequence[int],
        weights: Sequence[int] | np.ndarray | Mapping[int, int],
        nodemask: Sequence[int] | np.ndarray | None = None,
    ) -> np.ndarray:
        """First-touch ``pages`` (in the given order) under MPOL_WEIGHTED_INTERLEAVE.

        Each page goes to ``weighted_interleave_nid`` over the nodemask (default: all nodes),
        restricted to nodes with memory as set_mempolicy does; a full node falls back to the
        next allowed node in ascending id order, cyclically. Returns the node of each page.
        Raises OutOfMemory, leaving the state unchanged, if the allowed nodes lack room.
        """
        table = check_weights(weights, self.n_nodes)
        if nodemask is None:
            allowed = self._memory_nodes
        else:
            mask = mask_nodes(nodemask, self.n_nodes)
            allowed = mask[self._capacity[mask] > 0]
            if allowed.size == 0:
                raise ValueError(f"nodemask {mask.tolist()} holds no node with memory")
        return self._allocate(app, pages, allowed, table[allowed])

    def allocate_on(self, app: int, pages: np.ndarray | Sequence[int], node: int) -> np.ndarray:
        """First-touch ``pages`` on ``node`` only (MPOL_BIND to one node)."""
        self._check_node(node)
        if self._capacity[node] == 0:
            raise ValueError(f"node {node} has no memory; cannot bind pages to it")
        return self._allocate(app, pages, np.array([node], dtype=np.int64), np.ones(1, np.int64))

    def free(self, app: int, pages: np.ndarray | Sequence[int]) -> int:
        """Free the resident ones of ``pages`` (others are ignored); returns how many."""
        self._app_slice(app)
        pages = _page_indices(pages)
        code, value = self._ops.free_pages(app, pages, self._mem())
        if code != kernels.OK:
            self._raise(code, value, app, pages)
        if value:
            self._changed(residency=True)
        return int(value)

    # ---- migration ------------------------------------------------------------------------

    @property
    def pgmigrate_success(self) -> int:
        return self._success

    @property
    def pgmigrate_fail(self) -> int:
        return self._fail

    @property
    def migrated_pages_matrix(self) -> np.ndarray:
        """Cumulative pages migrated from row node to column node."""
        return self._migrated.copy()

    def migrate_pages(
        self, app: int, pages: np.ndarray | Sequence[int], dest_nodes: int | np.ndarray
    ) -> MigrationResult:
        """Migrate ``pages`` to ``dest_nodes`` (one node, or one per page; -1 = stay)."""
        span = self._app_slice(app)
        pages = _page_indices(pages)
        dests = np.asarray(dest_nodes)
        if dests.dtype.kind not in "iu" and dests.size:
            raise TypeError(f"dest_nodes must be integer node ids, got dtype {dests.dtype}")
        if dests.ndim == 0:
            dests = np.full(pages.size, int(dests), dtype=np.int64)
        elif dests.shape != pages.shape:
            raise ValueError(
                f"dest_nodes must be one node or one per page: {pages.size} pages, "
                f"{dests.size} dest_nodes"
            )
        else:
            dests = dests.astype(np.int64)
        if pages.size > 1 and not np.all(pages[1:] > pages[:-1]):
            # The kernel walks in address order: earlier pages take the last free frames.
            order = np.argsort(pages, kind="stable")
            pages, dests = pages[order], dests[order]
            repeated = np.flatnonzero(pages[1:] == pages[:-1])
            if repeated.size:
                raise ValueError(f"app {app}: page {pages[repeated[0]]} appears twice in pages")
        count = span.stop - span.start
        if pages.size and (pages[0] < 0 or pages[-1] >= count):
            bad = pages[0] if pages[0] < 0 else pages[-1]
            raise ValueError(f"app {app}: page index {bad} is outside 0..{count - 1}")
        return self._migrated_by(self._ops.migrate_list, app, pages, dests)

    def migrate_vaddr_range_to_dests(
        self,
        app: int,
        start: int,
        end: int,
        dest_nodes: Sequence[int] | np.ndarray,
        dest_weights: Sequence[int] | np.ndarray,
    ) -> MigrationResult:
        """DAMOS vaddr migrate_hot/cold with ``dests``: each resident page overlapping
        [start, end) goes to ``dests_nid(vaddr // page_size, dest_nodes, dest_weights)``.

        The kernel's page walk visits every folio touching the range, so a partly covered
        page counts as in it. Weights summing to 0 migrate nothing, as in the kernel.
        """
        self._app_slice(app)
        nodes = np.asarray(dest_nodes)
        weights = np.asarray(dest_weights)
        if nodes.dtype.kind not in "iu" and nodes.size:
            raise TypeError(f"dest_nodes must be integer node ids, got dtype {nodes.dtype}")
        nodes = nodes.astype(np.int64)
        if nodes.ndim != 1 or nodes.size == 0:
            raise ValueError(
                "dest_nodes is empty: without dests the kernel migrates to target_nid; "
                "use migrate_vaddr_range_to_node"
            )
        if weights.shape != nodes.shape:
            raise ValueError(
                f"need one weight per dest: {nodes.size} dest_nodes, {weights.size} dest_weights"
            )
        if weights.dtype.kind not in "iu":
            raise TypeError(f"dest_weights must be integers ({_U32_NOTE}), got {weights.dtype}")
        bad = np.flatnonzero((weights < 0) | (weights > MAX_DEST_WEIGHT))
        if bad.size:
            raise ValueError(f"dest {bad[0]} has weight {weights[bad[0]]}; {_U32_NOTE}")
        return self._migrated_by(
            self._ops.migrate_vaddr_range,
            app,
            int(start),
            int(end),
            self._shift,
            nodes,
            weights.astype(np.int64),
        )

    def migrate_vaddr_range_to_node(
        self, app: int, start: int, end: int, node: int
    ) -> MigrationResult:
        """DAMOS vaddr migrate to ``target_nid``: resident pages overlapping [start, end)."""
        self._app_slice(app)
        return self._migrated_by(
            self._ops.migrate_vaddr_range,
            app,
            int(start),
            int(end),
            self._shift,
            np.array([int(node)], dtype=np.int64),
            np.ones(1, dtype=np.int64),
        )

    def migrate_phys_range_to_node(self, start: int, end: int, node: int) -> MigrationResult:
        """DAMOS paddr migrate: pages in frames overlapping physical [start, end) to ``node``
        (paddr ignores ``dests``)."""
        first = max((int(start) - self._phys_base) // self._page_size, 0)
        last = min(-((self._phys_base - int(end)) // self._page_size), self.n_frames)  # ceil
        return self._migrated_by(self._ops.migrate_frames, first, max(last, first), int(node))

    def migrate_vaddr_ranges(
        self,
        app: int,
        starts: np.ndarray,
        ends: np.ndarray,
        dest_nodes: np.ndarray,
        dest_weights: np.ndarray,
    ) -> tuple[np.ndarray, MigrationResult]:
        """``migrate_vaddr_range_to_dests`` over many ranges in order, in one compiled call
        (a DAMOS pass over every region it applies to). ``dest_nodes``/``dest_weights`` are
        int64 arrays, already valid (the scheme's configuration was checked); one node with
        weight 1 is the target_nid case. Returns pages moved per range and the total."""
        self._app_slice(app)
        starts = np.ascontiguousarray(starts, dtype=np.int64)
        per_range = np.zeros(starts.size, dtype=np.int64)
        total = self._migrated_by(
            self._ops.migrate_vaddr_ranges,
            app,
            starts,
            np.ascontiguousarray(ends, dtype=np.int64),
            self._shift,
            dest_nodes,
            dest_weights,
            per_range_out=per_range,
        )
        return per_range, total

    def migrate_phys_ranges(
        self, starts: np.ndarray, ends: np.ndarray, node: int
    ) -> tuple[np.ndarray, MigrationResult]:
        """``migrate_phys_range_to_node`` over many ranges in order, in one compiled call."""
        starts = np.asarray(starts, dtype=np.int64)
        ends = np.asarray(ends, dtype=np.int64)
        firsts = np.clip((starts - self._phys_base) // self._page_size, 0, self.n_frames)
        lasts = np.clip(-((self._phys_base - ends) // self._page_size), 0, self.n_frames)
        lasts = np.maximum(lasts, firsts)
        per_range = np.zeros(starts.size, dtype=np.int64)
        total = self._migrated_by(
            self._ops.migrate_frame_ranges, firsts, lasts, int(node), per_range_out=per_range
        )
        return per_range, total

    def compiled_tables(self) -> tuple[tuple[np.ndarray, ...], int]:
        """(the tables ``tierenv.memory.kernels`` work on, log2 page size), for compiled
        callers that migrate pages inside their own loops (DAMON's compiled passes). They
        must report what they moved with ``record_migrations``. Valid until ``add_app``."""
        return self._mem(), self._shift

    def record_migrations(self, moved_matrix: np.ndarray, failed: int) -> None:
        """Account for migrations a compiled caller made through ``compiled_tables``."""
        moved = int(moved_matrix.sum())
        self._success += moved
        self._fail += int(failed)
        self._migrated += moved_matrix
        if moved:
            self._changed(residency=False)

    # ---- paddr views, snapshots -----------------------------------------------------------

    def frame_values(self, per_app_page_values: Mapping[int, np.ndarray]) -> np.ndarray:
        """Scatter per-page values (e.g. access rates) of applications onto their frames;
        free frames and frames of applications not given get 0."""
        out = np.zeros(self.n_frames)
        for app, values in per_app_page_values.items():
            span = self._app_slice(app)
            values = np.asarray(values, dtype=float)
            if values.shape != (span.stop - span.start,):
                raise ValueError(
                    f"values for app {app} must have one entry per page "
                    f"({span.stop - span.start}), got shape {values.shape}"
                )
            frames = self._page_frame[span]
            resident = frames >= 0
            out[frames[resident]] = values[resident]
        return out

    def copy(self) -> MemoryState:
        """An independent deep copy (a snapshot)."""
        clone = object.__new__(MemoryState)
        for name, value in vars(self).items():
            setattr(clone, name, value.copy() if isinstance(value, np.ndarray | dict) else value)
        return clone

    def __deepcopy__(self, memo: dict) -> MemoryState:
        """Deep copies (``copy.deepcopy`` of a host or kdamond holding this state) share the
        compiled-kernel module and copy every table."""
        clone = self.copy()
        memo[id(self)] = clone
        return clone

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Copies of everything that defines the state (to compare states in tests)."""
        used = slice(0, self._pages_used)
        stacks = [
            self._free[self._node_first[i] : self._node_first[i] + self._free_top[i]]
            for i in range(self.n_nodes)
        ]
        return {
            "frame_app": self._frame_app.copy(),
            "frame_page": self._frame_page.copy(),
            "free_stacks": np.concatenate(stacks),
            "free_top": self._free_top.copy(),
            "page_node": self._page_node[used].copy(),
            "page_frame": self._page_frame[used].copy(),
            "page_vaddr": self._page_vaddr[used].copy(),
            "app_resident": self._app_resident[: self._next_app].copy(),
            "migrated_pages_matrix": self._migrated.copy(),
            "pgmigrate": np.array([self._success, self._fail]),
        }

    # ---- internals ------------------------------------------------------------------------

    def _mem(self) -> tuple[np.ndarray, ...]:
        return (
            self._frame_app,
            self._frame_page,
            self._free,
            self._free_top,
            self._node_first,
            self._page_node,
            self._page_frame,
            self._page_vaddr,
            self._app_base,
            self._app_npages,
            self._app_resident,
        )

    def _allocate(self, app, pages, allowed, weights) -> np.ndarray:
        self._app_slice(app)
        pages = _page_indices(pages)
        out = np.empty(pages.size, dtype=np.int16)
        code, value = self._ops.allocate(
            app, pages, self._shift, allowed, weights, self._mem(), out
        )
        if code == kernels.OUT_OF_MEMORY:
            raise OutOfMemory(
                f"app {app}: {value} of {pages.size} pages could not be placed: nodes "
                f"{allowed.tolist()} have {int(self._free_top[allowed].sum())} free pages"
            )
        if code != kernels.OK:
            self._raise(code, value, app, pages)
        if pages.size:
            self._changed(residency=True)
        return out

    def _migrated_by(self, operation, *args, per_range_out=None) -> MigrationResult:
        moved = np.zeros((self.n_nodes, self.n_nodes), dtype=np.int64)
        if per_range_out is None:
            n_moved, n_failed = operation(*args, self._mem(), moved)
        else:
            n_moved, n_failed = operation(*args, self._mem(), moved, per_range_out)
        self._success += int(n_moved)
        self._fail += int(n_failed)
        self._migrated += moved
        if n_moved:
            self._changed(residency=False)
        return MigrationResult(int(n_moved), int(n_failed), moved, self._page_size)

    def _raise(self, code: int, where: int, app: int, pages: np.ndarray) -> None:
        page = int(pages[where])
        if code == kernels.OUT_OF_RANGE:
            count = int(self._app_npages[app])
            raise ValueError(
                f"app {app}: page index {page} (pages[{where}]) is outside 0..{count - 1}"
            )
        if code == kernels.DUPLICATE:
            raise ValueError(f"app {app}: page {page} appears twice in pages")
        node = int(self._page_node[self._app_base[app] + page])
        raise ValueError(
            f"app {app}: page {page} is already resident on node {node}; free or migrate it"
        )

    def _app_slice(self, app: int) -> slice:
        if app not in self._vmas:
            raise ValueError(f"unknown app {app!r}; live apps are {list(self._vmas)}")
        base = int(self._app_base[app])
        return slice(base, base + int(self._app_npages[app]))

    def _check_node(self, node: int) -> None:
        if not _is_int(node) or not 0 <= node < self.n_nodes:
            raise ValueError(f"node {node!r} is not a node id in 0..{self.n_nodes - 1}")

    def _checked_vmas(self, vmas) -> tuple[tuple[int, int], ...]:
        if len(vmas) == 0:
            raise ValueError("an application needs at least one VMA")
        spans = []
        for i, vma in enumerate(vmas):
            if len(vma) != 2 or not all(_is_int(v) for v in vma):
                raise ValueError(f"vma {i} must be (start, size) in bytes, got {vma!r}")
            start, size = int(vma[0]), int(vma[1])
            if start < 0 or size <= 0 or start + size > 2**62:
                raise ValueError(
                    f"vma {i} (start {start:#x}, size {size}) is empty or out of range"
                )
            if start % self._page_size or size % self._page_size:
                raise ValueError(
                    f"vma {i} (start {start:#x}, size {size}) is not aligned to the page size "
                    f"{self._page_size}"
                )
            spans.append((start, size))
        spans.sort()
        for (a, a_size), (b, _) in itertools.pairwise(spans):
            if a + a_size > b:
                raise ValueError(f"vmas at {a:#x} (size {a_size}) and {b:#x} overlap")
        return tuple(spans)

    def _reserve(self, app: int, n_pages: int) -> None:
        """Room for app id ``app`` and ``n_pages`` more pages (grows or compacts the tables)."""
        if app >= self._app_base.size:
            size = max(2 * self._app_base.size, 8)
            self._app_base = _grown(self._app_base, size, 0)
            self._app_npages = _grown(self._app_npages, size, 0)
            resident = np.zeros((size, self.n_nodes), dtype=np.int64)
            resident[: self._app_resident.shape[0]] = self._app_resident
            self._app_resident = resident
        needed = self._pages_used + n_pages
        if needed <= self._page_vaddr.size:
            return
        live = int(self._app_npages.sum())
        size = max(2 * (live + n_pages), 1024)
        node, frame, vaddr = (
            np.full(size, -1, np.int16),
            np.full(size, -1, np.int64),
            np.zeros(size, np.int64),
        )
        # Compaction: removed applications' entries are dropped; frames keep (app, page).
        at = 0
        for a in self._vmas:
            span = self._app_slice(a)
            count = span.stop - span.start
            node[at : at + count] = self._page_node[span]
            frame[at : at + count] = self._page_frame[span]
            vaddr[at : at + count] = self._page_vaddr[span]
            self._app_base[a] = at
            at += count
        self._page_node, self._page_frame, self._page_vaddr = node, frame, vaddr
        self._pages_used = at


def _grown(array: np.ndarray, size: int, fill: int) -> np.ndarray:
    out = np.full(size, fill, dtype=array.dtype)
    out[: array.size] = array
    return out


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def _engine_ops(engine: str) -> ModuleType:
    """The module whose functions implement ``engine`` (compiled kernels unless "reference")."""
    return reference if engine == "reference" else kernels


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _page_indices(pages) -> np.ndarray:
    array = np.atleast_1d(np.asarray(pages))
    if array.ndim != 1:
        raise ValueError(f"pages must be a 1-d array of page indices, got shape {array.shape}")
    if array.dtype.kind not in "iu" and array.size:
        raise TypeError(f"pages must be integer page indices, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)
