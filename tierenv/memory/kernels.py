"""Compiled (numba) per-page loops of ``MemoryState``: allocation, freeing, migration.

They run every DAMOS apply interval of a simulator that aims at thousands of times real time,
so they work in place on the state's plain arrays (``mem``, see ``MemoryState._mem``) and
report problems as codes that the Python wrapper turns into errors. ``reference.py`` holds a
plain Python/numpy implementation of the same behaviour that tests compare these with.

Free frames of node i form a stack in ``free[node_first[i]:node_first[i + 1]]`` with
``free_top[i]`` entries: the top is taken first and freed frames are pushed on it, so freed
frames are reused first. ``mem`` is the tuple (frame_app, frame_page, free, free_top,
node_first, page_node, page_frame, page_vaddr, app_base, app_npages, app_resident); pages of
app a are global entries ``app_base[a] + p`` of the page arrays.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # numba is optional: without it these run as plain Python
    AVAILABLE = False
else:
    AVAILABLE = True

OK = 0
OUT_OF_RANGE = 1  # (code, index into pages)
DUPLICATE = 2  # (code, index into pages)
RESIDENT = 3  # (code, index into pages)
OUT_OF_MEMORY = 4  # (code, pages that could not be placed)


def _take_frame(node, free, free_top, node_first):
    top = free_top[node] - 1
    free_top[node] = top
    return free[node_first[node] + top]


def _give_frame(frame, node, free, free_top, node_first):
    free[node_first[node] + free_top[node]] = frame
    free_top[node] += 1


def _check_new_pages(app, pages, mem):
    """(code, index) of the first page that is out of range, repeated or resident."""
    page_node = mem[5]
    base, count = mem[8][app], mem[9][app]
    code, where, marked = OK, 0, 0
    for i in range(pages.size):
        p = pages[i]
        if p < 0 or p >= count:
            code, where = OUT_OF_RANGE, i
            break
        node = page_node[base + p]
        if node == -2:
            code, where = DUPLICATE, i
            break
        if node >= 0:
            code, where = RESIDENT, i
            break
        page_node[base + p] = -2  # seen in this request; restored below
        marked += 1
    for i in range(marked):
        page_node[base + pages[i]] = -1
    return code, where


def allocate(app, pages, shift, allowed, weights, mem, out):
    """Place ``pages`` (first-touch order) by weighted interleave over ``allowed`` (ascending
    node ids with memory) with ``weights``; a full node falls back to the next allowed node
    with a free frame, cyclically. Nothing changes unless every page fits."""
    frame_app, frame_page, free, free_top, node_first = mem[:5]
    page_node, page_frame, page_vaddr, app_base, _, app_resident = mem[5:]
    code, where = _check_new_pages(app, pages, mem)
    if code != OK:
        return code, where
    room = 0
    for k in range(allowed.size):
        room += free_top[allowed[k]]
    if pages.size > room:
        return OUT_OF_MEMORY, pages.size - room
    total = 0
    for k in range(weights.size):
        total += weights[k]
    base = app_base[app]
    m = allowed.size
    for i in range(pages.size):
        p = pages[i]
        g = base + p
        target = (page_vaddr[g] >> shift) % total
        k = 0
        while target >= weights[k]:
            target -= weights[k]
            k += 1
        node = allowed[k]
        for step in range(m):
            node = allowed[(k + step) % m]
            if free_top[node] > 0:
                break
        frame = _take_frame(node, free, free_top, node_first)
        frame_app[frame] = app
        frame_page[frame] = p
        page_node[g] = node
        page_frame[g] = frame
        app_resident[app, node] += 1
        out[i] = node
    return OK, 0


def free_pages(app, pages, mem):
    """Free the resident ones of ``pages``; returns (code, index or pages freed)."""
    frame_app, frame_page, free, free_top, node_first = mem[:5]
    page_node, page_frame, _, app_base, app_npages, app_resident = mem[5:]
    base, count = app_base[app], app_npages[app]
    for i in range(pages.size):
        if pages[i] < 0 or pages[i] >= count:
            return OUT_OF_RANGE, i
    freed = 0
    for i in range(pages.size):
        g = base + pages[i]
        node = page_node[g]
        if node < 0:
            continue
        frame = page_frame[g]
        _give_frame(frame, node, free, free_top, node_first)
        frame_app[frame] = -1
        frame_page[frame] = -1
        page_node[g] = -1
        page_frame[g] = -1
        app_resident[app, node] -= 1
        freed += 1
    return OK, freed


def _move(app, p, dst, mem, moved):
    """Migrate one page: 1 moved, 0 skipped (not resident, no valid target, already there),
    -1 failed (no free frame on the target: no reclaim, as DAMON's GFP_NOWAIT)."""
    frame_app, frame_page, free, free_top, node_first = mem[:5]
    page_node, page_frame, _, app_base, _, app_resident = mem[5:]
    g = app_base[app] + p
    src = page_node[g]
    n_nodes = free_top.size
    if src < 0 or dst < 0 or dst >= n_nodes or dst == src:
        return 0
    if node_first[dst + 1] == node_first[dst]:  # memory-less: the kernel ignores the request
        return 0
    if free_top[dst] == 0:
        return -1
    new = _take_frame(dst, free, free_top, node_first)
    old = page_frame[g]
    _give_frame(old, src, free, free_top, node_first)
    frame_app[old] = -1
    frame_page[old] = -1
    frame_app[new] = app
    frame_page[new] = p
    page_node[g] = dst
    page_frame[g] = new
    app_resident[app, src] -= 1
    app_resident[app, dst] += 1
    moved[src, dst] += 1
    return 1


def migrate_list(app, pages, dests, mem, moved):
    """Migrate ``pages`` (ascending, unique, in range) to ``dests``; returns (moved, failed)."""
    n_moved, n_failed = 0, 0
    for i in range(pages.size):
        result = _move(app, pages[i], dests[i], mem, moved)
        if result > 0:
            n_moved += 1
        elif result < 0:
            n_failed += 1
    return n_moved, n_failed


def _pages_to_move(
    vaddr, page_node, first, last, shift, total, dest_nodes, dest_weights, todo_page, todo_dest
):
    """``migrate_vaddr_range``'s lists: the resident pages first..last-1 (in address order)
    not on their dest's node, with their dest's index; returns how many. The interleave index
    (vaddr >> shift) % total steps by one from page to adjacent page, so the division is done
    only where the addresses jump."""
    size = 1 << shift
    n_todo = 0
    slot = (vaddr[first] >> shift) % total
    for p in range(first, last):
        if p > first:
            if vaddr[p] == vaddr[p - 1] + size:
                slot += 1
                if slot == total:
                    slot = 0
            else:
                slot = (vaddr[p] >> shift) % total
        node = page_node[p]
        if node < 0:
            continue
        target = slot
        k = 0
        while target >= dest_weights[k]:
            target -= dest_weights[k]
            k += 1
        if dest_nodes[k] == node:
            continue
        todo_page[n_todo] = p
        todo_dest[n_todo] = k
        n_todo += 1
    return n_todo


def migrate_vaddr_range(app, start, end, shift, dest_nodes, dest_weights, mem, moved):
    """DAMOS vaddr migrate: every resident page overlapping [start, end) goes to its dest by
    weighted interleave over the dests in array order; returns (moved, failed).

    As ``damos_va_migrate`` does, the pages are first sorted into one list per dest and the
    lists are then migrated one after another in dests order (so a frame freed by a page
    leaving node A serves only the lists that come later)."""
    page_node, _, page_vaddr, app_base, app_npages, _ = mem[5:]
    total = 0
    for k in range(dest_weights.size):
        total += dest_weights[k]
    if total == 0 or end <= start:
        return 0, 0
    base = app_base[app]
    vaddr = page_vaddr[base : base + app_npages[app]]
    size = 1 << shift
    first = _search(vaddr, start - size)  # first page whose end lies beyond start
    last = _search(vaddr, end - 1)  # first page that starts at or after end
    n_moved, n_failed = 0, 0
    if first >= last:
        return 0, 0
    # Each page's dest, worked out once: every page belongs to exactly one dest's list and
    # only its own move changes its node, so listing (in address order) the resident pages
    # not yet on their dest's node and then migrating each dest's list in dests order does
    # what the kernel's lists do (pages already in place are no-ops there).
    todo_page = np.empty(last - first, dtype=np.int64)
    todo_dest = np.empty(last - first, dtype=np.int64)
    n_todo = _pages_to_move(
        vaddr, page_node[base : base + vaddr.size], first, last, shift, total, dest_nodes,
        dest_weights, todo_page, todo_dest,
    )  # fmt: skip
    if n_todo == 0:
        return 0, 0
    for dest in range(dest_weights.size):
        for i in range(n_todo):
            if todo_dest[i] != dest:
                continue
            result = _move(app, todo_page[i], dest_nodes[dest], mem, moved)
            if result > 0:
                n_moved += 1
            elif result < 0:
                n_failed += 1
    return n_moved, n_failed


def migrate_frames(first, last, dst, mem, moved):
    """DAMOS paddr migrate: pages held by frames first..last-1 to ``dst``; (moved, failed)."""
    frame_app, frame_page = mem[0], mem[1]
    n_moved, n_failed = 0, 0
    for frame in range(first, last):
        app = frame_app[frame]
        if app < 0:
            continue
        result = _move(app, frame_page[frame], dst, mem, moved)
        if result > 0:
            n_moved += 1
        elif result < 0:
            n_failed += 1
    return n_moved, n_failed


def migrate_vaddr_ranges(app, starts, ends, shift, dest_nodes, dest_weights, mem, moved, out):
    """``migrate_vaddr_range`` over many ranges in order (one DAMOS pass over its regions);
    pages moved per range go to ``out``; returns (moved, failed) in total."""
    n_moved, n_failed = 0, 0
    for i in range(starts.size):
        before = n_moved
        m, f = migrate_vaddr_range(
            app, starts[i], ends[i], shift, dest_nodes, dest_weights, mem, moved
        )
        n_moved += m
        n_failed += f
        out[i] = n_moved - before
    return n_moved, n_failed


def migrate_frame_ranges(firsts, lasts, dst, mem, moved, out):
    """``migrate_frames`` over many frame ranges in order; moved per range to ``out``."""
    n_moved, n_failed = 0, 0
    for i in range(firsts.size):
        m, f = migrate_frames(firsts[i], lasts[i], dst, mem, moved)
        n_moved += m
        n_failed += f
        out[i] = m
    return n_moved, n_failed


def count_in_ranges(vaddr, page_node, starts, ends, out):
    """out[i, node] += the pages whose address lies in [starts[i], ends[i]) resident on node
    (``vaddr`` ascending; -1 in ``page_node``: not resident)."""
    for i in range(starts.size):
        first = _search(vaddr, starts[i] - 1)  # first page at or after starts[i]
        last = _search(vaddr, ends[i] - 1)  # first page at or after ends[i]
        for node in range(out.shape[1]):  # a pass per node: a count the compiler vectorises
            count = 0
            for p in range(first, last):
                count += page_node[p] == node
            out[i, node] += count


def access_split(page_node, shares, hot, per_node, hot_pages):
    """per_node[node] += the shares of the pages resident on node (added in page order, as
    ``np.bincount`` adds its weights), hot_pages[node] += its pages flagged in ``hot``."""
    for p in range(page_node.size):
        node = page_node[p]
        if node >= 0:
            per_node[node] += shares[p]
            if hot[p]:
                hot_pages[node] += 1


def _search(sorted_values, value):
    """Number of entries <= value (bisect_right)."""
    low, high = 0, sorted_values.size
    while low < high:
        mid = (low + high) // 2
        if sorted_values[mid] <= value:
            low = mid + 1
        else:
            high = mid
    return low


if AVAILABLE:
    _take_frame = njit(cache=True)(_take_frame)
    _give_frame = njit(cache=True)(_give_frame)
    _check_new_pages = njit(cache=True)(_check_new_pages)
    _move = njit(cache=True)(_move)
    _search = njit(cache=True)(_search)
    _pages_to_move = njit(cache=True)(_pages_to_move)
    count_in_ranges = njit(cache=True)(count_in_ranges)
    access_split = njit(cache=True)(access_split)
    allocate = njit(cache=True)(allocate)
    free_pages = njit(cache=True)(free_pages)
    migrate_vaddr_ranges = njit(cache=True)(migrate_vaddr_ranges)
    migrate_frame_ranges = njit(cache=True)(migrate_frame_ranges)
    migrate_list = njit(cache=True)(migrate_list)
    migrate_vaddr_range = njit(cache=True)(migrate_vaddr_range)
    migrate_frames = njit(cache=True)(migrate_frames)
