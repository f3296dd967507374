"""Plain Python/numpy reference for ``kernels.py``: same signatures, codes and effects.

Written for clarity, not speed: destinations come from the vectorised arithmetic in
``interleave.py`` and each step is a separate, simple pass. ``MemoryState(engine="reference")``
runs it; tests check that the compiled kernels leave exactly the same state.
"""

from __future__ import annotations

import numpy as np

from tierenv.memory.interleave import interleave_targets
from tierenv.memory.kernels import DUPLICATE, OK, OUT_OF_MEMORY, OUT_OF_RANGE, RESIDENT


class _Frames:
    """The free-frame stacks and owner arrays of ``mem``."""

    def __init__(self, mem):
        self.frame_app, self.frame_page, self.free, self.free_top, self.node_first = mem[:5]

    def has_memory(self, node: int) -> bool:
        return 0 <= node < self.free_top.size and self.node_first[node + 1] > self.node_first[node]

    def take(self, node: int) -> int:
        self.free_top[node] -= 1
        return int(self.free[self.node_first[node] + self.free_top[node]])

    def give(self, frame: int, node: int) -> None:
        self.free[self.node_first[node] + self.free_top[node]] = frame
        self.free_top[node] += 1

    def own(self, frame: int, app: int, page: int) -> None:
        self.frame_app[frame] = app
        self.frame_page[frame] = page


def allocate(app, pages, shift, allowed, weights, mem, out):
    frames = _Frames(mem)
    page_node, page_frame, page_vaddr, app_base, app_npages, app_resident = mem[5:]
    base, count = int(app_base[app]), int(app_npages[app])
    seen: set[int] = set()
    for i, p in enumerate(pages.tolist()):
        if not 0 <= p < count:
            return OUT_OF_RANGE, i
        if p in seen:
            return DUPLICATE, i
        if page_node[base + p] >= 0:
            return RESIDENT, i
        seen.add(p)
    room = int(frames.free_top[allowed].sum())
    if pages.size > room:
        return OUT_OF_MEMORY, pages.size - room
    preferred = interleave_targets(page_vaddr[base + pages] >> shift, allowed, weights)
    order = allowed.tolist()
    for i, p in enumerate(pages.tolist()):
        start = order.index(int(preferred[i]))
        node = next(n for n in order[start:] + order[:start] if frames.free_top[n] > 0)
        frame = frames.take(node)
        frames.own(frame, app, p)
        page_node[base + p] = node
        page_frame[base + p] = frame
        app_resident[app, node] += 1
        out[i] = node
    return OK, 0


def free_pages(app, pages, mem):
    frames = _Frames(mem)
    page_node, page_frame, _, app_base, app_npages, app_resident = mem[5:]
    base, count = int(app_base[app]), int(app_npages[app])
    outside = np.flatnonzero((pages < 0) | (pages >= count))
    if outside.size:
        return OUT_OF_RANGE, int(outside[0])
    freed = 0
    for p in pages.tolist():
        node = int(page_node[base + p])
        if node < 0:
            continue
        frame = int(page_frame[base + p])
        frames.give(frame, node)
        frames.own(frame, -1, -1)
        page_node[base + p] = -1
        page_frame[base + p] = -1
        app_resident[app, node] -= 1
        freed += 1
    return OK, freed


def _migrate(app, pages, dests, mem, moved):
    frames = _Frames(mem)
    page_node, page_frame, _, app_base, _, app_resident = mem[5:]
    base = int(app_base[app])
    n_moved = n_failed = 0
    for p, dst in zip(pages.tolist(), dests.tolist(), strict=True):
        src = int(page_node[base + p])
        if src < 0 or dst == src or not frames.has_memory(dst):
            continue
        if frames.free_top[dst] == 0:
            n_failed += 1
            continue
        new = frames.take(dst)
        old = int(page_frame[base + p])
        frames.give(old, src)
        frames.own(old, -1, -1)
        frames.own(new, app, p)
        page_node[base + p] = dst
        page_frame[base + p] = new
        app_resident[app, src] -= 1
        app_resident[app, dst] += 1
        moved[src, dst] += 1
        n_moved += 1
    return n_moved, n_failed


def migrate_list(app, pages, dests, mem, moved):
    return _migrate(app, pages, dests, mem, moved)


def migrate_vaddr_range(app, start, end, shift, dest_nodes, dest_weights, mem, moved):
    page_vaddr, app_base, app_npages = mem[7], mem[8], mem[9]
    base = int(app_base[app])
    vaddr = page_vaddr[base : base + app_npages[app]]
    pages = np.flatnonzero((vaddr < end) & (vaddr + (1 << shift) > start))
    if len(pages) == 0 or int(np.sum(dest_weights)) == 0:
        return 0, 0
    # which dest (array position) each page's interleave index picks
    bounds = np.cumsum(dest_weights)
    position = np.searchsorted(bounds, (vaddr[pages] >> shift) % bounds[-1], side="right")
    order = np.argsort(position, kind="stable")  # one list per dest, in dests order
    pages = pages[order]
    return _migrate(app, pages, np.asarray(dest_nodes)[position[order]], mem, moved)


def migrate_frames(first, last, dst, mem, moved):
    n_moved = n_failed = 0
    frame_app, frame_page = mem[0], mem[1]
    for frame in range(first, last):
        app = int(frame_app[frame])
        if app < 0:
            continue
        page = np.array([frame_page[frame]])
        done, failed = _migrate(app, page, np.array([dst]), mem, moved)
        n_moved += done
        n_failed += failed
    return n_moved, n_failed


def migrate_vaddr_ranges(app, starts, ends, shift, dest_nodes, dest_weights, mem, moved, out):
    n_moved = n_failed = 0
    for i in range(len(starts)):
        done, failed = migrate_vaddr_range(
            app, starts[i], ends[i], shift, dest_nodes, dest_weights, mem, moved
        )
        out[i] = done
        n_moved += done
        n_failed += failed
    return n_moved, n_failed


def migrate_frame_ranges(firsts, lasts, dst, mem, moved, out):
    n_moved = n_failed = 0
    for i in range(len(firsts)):
        done, failed = migrate_frames(firsts[i], lasts[i], dst, mem, moved)
        out[i] = done
        n_moved += done
        n_failed += failed
    return n_moved, n_failed


def count_in_ranges(vaddr, page_node, starts, ends, out):
    first = np.searchsorted(vaddr, np.asarray(starts, dtype=np.int64))
    last = np.searchsorted(vaddr, np.asarray(ends, dtype=np.int64))
    for node in range(out.shape[1]):
        running = np.concatenate(([0], np.cumsum(page_node == node)))
        out[:, node] += running[last] - running[first]


def access_split(page_node, shares, hot, per_node, hot_pages):
    on_node = page_node >= 0
    n_nodes = per_node.size
    per_node += np.bincount(page_node[on_node], weights=shares[on_node], minlength=n_nodes)
    hot_pages += np.bincount(page_node[hot & on_node], minlength=n_nodes)
