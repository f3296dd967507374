"""Page placement and migration: hand cases and properties over random operation sequences."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tierenv.memory import kernels
from tierenv.memory.interleave import dests_nid, weighted_interleave_nid
from tierenv.memory.state import MemoryState, MigrationResult, OutOfMemory

PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("TIERENV_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
MIB = 1 << 20
ENGINES = ["reference", "numba"] if kernels.AVAILABLE else ["reference"]


def check_invariants(state: MemoryState) -> None:
    """Pages conserved, every resident page in exactly one frame, owners consistent."""
    arrays = state.state_arrays()
    capacity = state.capacity_pages
    assert np.all(state.used_pages >= 0) and np.all(state.used_pages <= capacity)
    assert np.array_equal(state.used_pages + state.free_pages, capacity)
    frame_app, frame_page = arrays["frame_app"], arrays["frame_page"]
    free = arrays["free_stacks"]
    # Free frames: unique, unowned, on the node whose stack holds them.
    assert np.unique(free).size == free.size
    assert np.all(frame_app[free] == -1) and np.all(frame_page[free] == -1)
    owners = np.repeat(np.arange(state.n_nodes), state.free_pages)
    assert np.array_equal(state.node_of_frame[free], owners)
    owned = np.flatnonzero(frame_app >= 0)
    assert owned.size + free.size == state.n_frames
    used = np.bincount(state.node_of_frame[owned], minlength=state.n_nodes)
    assert np.array_equal(used, state.used_pages)
    resident_total = 0
    for app in state.app_ids:
        nodes, frames = state.node_of_page(app), state.frame_of_page(app)
        resident = np.flatnonzero(nodes >= 0)
        assert np.all(frames[nodes < 0] == -1)
        assert np.all(frame_app[frames[resident]] == app)
        assert np.array_equal(frame_page[frames[resident]], resident)
        assert np.array_equal(state.node_of_frame[frames[resident]], nodes[resident])
        assert np.array_equal(
            state.resident_pages(app), np.bincount(nodes[resident], minlength=state.n_nodes)
        )
        vaddr = state.app_page_vaddr(app)
        assert np.all(np.diff(vaddr) > 0) and np.all(vaddr % state.page_size == 0)
        resident_total += resident.size
    assert resident_total == owned.size


def two_node_state(engine: str, pages: tuple[int, int] = (6, 2), page_size: int = MIB):
    state = MemoryState([pages[0] * page_size, pages[1] * page_size], page_size, engine=engine)
    app = state.add_app([(64 * page_size, 16 * page_size)])
    return state, app


# ---- layout -------------------------------------------------------------------------------


def test_physical_layout_puts_nodes_one_after_another() -> None:
    state = MemoryState([3 * MIB + 5, 0, 2 * MIB], page_size=MIB, phys_base=4 << 30)
    assert state.capacity_pages.tolist() == [3, 0, 2]
    assert state.node_has_memory.tolist() == [True, False, True]
    assert state.node_phys_range(0) == ((4 << 30), (4 << 30) + 3 * MIB)
    assert state.node_phys_range(1) == ((4 << 30) + 3 * MIB,) * 2  # memory-less: empty
    assert state.node_phys_range(2) == ((4 << 30) + 3 * MIB, (4 << 30) + 5 * MIB)
    assert state.node_of_frame.tolist() == [0, 0, 0, 2, 2]
    assert state.used_pages.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="not a node id"):
        state.node_phys_range(3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"page_size": 3000}, "power of two >= 4096"),
        ({"page_size": 2048}, "power of two >= 4096"),
        ({"phys_base": 100}, "phys_base"),
        ({"capacity_bytes": [-1]}, "capacity of node 0"),
        ({"capacity_bytes": [4096.0]}, "capacity of node 0"),
        ({"capacity_bytes": [100, 0]}, "no node holds a page"),
        ({"capacity_bytes": []}, "nodes"),
        ({"engine": "fast"}, "engine"),
    ],
)
def test_bad_layouts_are_refused_with_the_field_named(kwargs, message) -> None:
    args = {"capacity_bytes": [8 * MIB]} | kwargs
    with pytest.raises(ValueError, match=message):
        MemoryState(**args)


def test_vmas_are_sorted_and_pages_numbered_in_address_order() -> None:
    state = MemoryState([64 * MIB], page_size=MIB)
    app = state.add_app([(40 * MIB, 2 * MIB), (8 * MIB, 3 * MIB)])
    assert state.app_vmas(app) == ((8 * MIB, 3 * MIB), (40 * MIB, 2 * MIB))
    assert (state.app_page_vaddr(app) // MIB).tolist() == [8, 9, 10, 40, 41]
    assert state.node_of_page(app).tolist() == [-1] * 5
    assert state.node_of_page(app).dtype == np.int16
    assert state.frame_of_page(app).tolist() == [-1] * 5
    with pytest.raises(ValueError):
        state.node_of_page(app)[0] = 1  # a read-only view of the live table


@pytest.mark.parametrize(
    ("vmas", "message"),
    [
        ([(MIB + 4096, MIB)], "not aligned"),
        ([(0, MIB + 4096)], "not aligned"),
        ([(0, 0)], "empty"),
        ([(0, 4 * MIB), (2 * MIB, MIB)], "overlap"),
        ([(0,)], r"\(start, size\)"),
        ([], "at least one VMA"),
    ],
)
def test_bad_vmas_are_refused(vmas, message) -> None:
    state = MemoryState([64 * MIB], page_size=MIB)
    with pytest.raises(ValueError, match=message):
        state.add_app(vmas)


# ---- allocation ---------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_allocation_takes_lowest_frames_first_and_reuses_freed_frames_first(engine) -> None:
    state, app = two_node_state(engine)
    assert state.allocate_on(app, [0, 1, 2], 0).tolist() == [0, 0, 0]
    assert state.frame_of_page(app).tolist()[:3] == [0, 1, 2]
    state.free(app, [1])
    state.allocate_on(app, [5], 0)
    assert state.frame_of_page(app)[5] == 1  # the freed frame, not frame 3
    assert state.frame_app[1] == app and state.frame_page[1] == 5
    check_invariants(state)


@pytest.mark.parametrize("engine", ENGINES)
def test_weighted_interleave_places_pages_by_virtual_page_number(engine) -> None:
    state = MemoryState([64 * MIB, 64 * MIB], page_size=MIB, engine=engine)
    app = state.add_app([(100 * MIB, 40 * MIB)])
    pages = np.arange(40)
    nodes = state.allocate(app, pages[::-1], [3, 1])  # touch order does not matter
    ilx = state.app_page_vaddr(app) // MIB
    assert np.array_equal(state.node_of_page(app), weighted_interleave_nid(ilx, [3, 1]))
    assert np.array_equal(nodes, weighted_interleave_nid(ilx[::-1], [3, 1]))
    assert state.resident_pages(app).tolist() == [30, 10]
    assert state.resident_bytes(app).tolist() == [30 * MIB, 10 * MIB]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_full_node_falls_back_to_the_next_allowed_node(engine) -> None:
    state = MemoryState([MIB, 4 * MIB, 0, 4 * MIB], page_size=MIB, engine=engine)
    app = state.add_app([(0, 10 * MIB)])
    # Weights 1:1:1:1 over nodes with memory (0, 1, 3): ilx 0 -> 0, 1 -> 1, 2 -> 3, 3 -> 0
    # (full: falls back to 1), ...
    nodes = state.allocate(app, np.arange(6), [1, 1, 1, 1])
    assert nodes.tolist() == [0, 1, 3, 1, 1, 3]
    # Within nodemask {0, 3}: ilx 6 -> node 0 (full) falls back to 3; ilx 7 -> 3.
    assert state.allocate(app, [6, 7], [1, 1, 1, 1], nodemask=[3, 0]).tolist() == [3, 3]
    assert state.free_pages.tolist() == [0, 1, 0, 0]
    with pytest.raises(OutOfMemory, match="nodes \\[0, 3\\] have 0 free pages"):
        state.allocate(app, [8], [1, 1, 1, 1], nodemask=[0, 3])  # node 1 has room, not allowed
    check_invariants(state)


@pytest.mark.parametrize("engine", ENGINES)
def test_fallback_wraps_around_to_lower_node_ids(engine) -> None:
    state = MemoryState([4 * MIB, 4 * MIB, MIB], page_size=MIB, engine=engine)
    app = state.add_app([(0, 8 * MIB)])
    state.allocate_on(app, [0], 2)  # node 2 now full
    assert state.allocate(app, [2], [1, 1, 1]).tolist() == [0]  # ilx 2 -> node 2 -> wraps to 0


@pytest.mark.parametrize("engine", ENGINES)
def test_out_of_memory_leaves_the_state_unchanged(engine) -> None:
    state, app = two_node_state(engine)
    state.allocate(app, np.arange(5), [1, 1])
    before = state.state_arrays()
    with pytest.raises(OutOfMemory, match="app 0: 1 of 4 pages could not be placed"):
        state.allocate(app, [5, 6, 7, 8], [1, 1])
    with pytest.raises(OutOfMemory, match="app 0: 3 of 3 pages"):
        state.allocate(app, [5, 6, 7], [1, 1], nodemask=[1])
    for name, array in state.state_arrays().items():
        assert np.array_equal(array, before[name]), name
    assert state.allocate(app, [5, 6, 7], [1, 1]).size == 3  # exactly fits


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("pages", "message"),
    [
        ([3, 16], r"page index 16 \(pages\[1\]\) is outside 0..15"),
        ([-1], "page index -1"),
        ([4, 4], "page 4 appears twice"),
        ([5, 0], "page 0 is already resident on node 0"),
        ([1.0], "integer page indices"),
    ],
)
def test_bad_page_requests_are_refused_and_change_nothing(engine, pages, message) -> None:
    state, app = two_node_state(engine)
    state.allocate_on(app, [0], 0)
    before = state.state_arrays()
    with pytest.raises((ValueError, TypeError), match=message):
        state.allocate(app, pages, [1, 1])
    for name, array in state.state_arrays().items():
        assert np.array_equal(array, before[name]), name


def test_bad_allocation_arguments_name_the_problem() -> None:
    state = MemoryState([4 * MIB, 0], page_size=MIB)
    app = state.add_app([(0, 4 * MIB)])
    with pytest.raises(ValueError, match="weight of node 1 is 0"):
        state.allocate(app, [0], [1, 0])
    with pytest.raises(ValueError, match="no node with memory"):
        state.allocate(app, [0], [1, 1], nodemask=[1])
    with pytest.raises(ValueError, match="node 1 has no memory"):
        state.allocate_on(app, [0], 1)
    with pytest.raises(ValueError, match="not a node id"):
        state.allocate_on(app, [0], 2)
    with pytest.raises(ValueError, match="unknown app 7"):
        state.allocate(7, [0], [1, 1])


@pytest.mark.parametrize("engine", ENGINES)
def test_small_pages_work(engine) -> None:
    page = 4096
    state = MemoryState([1000 * page, 500 * page], page_size=page, engine=engine)
    app = state.add_app([(0x7F0000000000, 1200 * page)])
    state.allocate(app, np.arange(1200), [2, 1])
    assert state.resident_pages(app).tolist() == [800, 400]
    result = state.migrate_vaddr_range_to_node(app, 0x7F0000000000, 0x7F0000000000 + 300 * page, 1)
    assert result.moved_pages == 100  # node 1 had 100 free frames; the rest fail
    assert result.failed_pages == 100
    check_invariants(state)


@pytest.mark.parametrize("engine", ENGINES)
def test_free_ignores_non_resident_pages_and_remove_app_frees_everything(engine) -> None:
    state, app = two_node_state(engine)
    state.allocate(app, [0, 1, 2], [1, 1])
    assert state.free(app, [1, 9]) == 1
    other = state.add_app([(0, 4 * MIB)])
    state.allocate_on(other, [0, 1], 0)
    state.remove_app(app)
    assert state.app_ids == (other,)
    assert state.used_pages.tolist() == [2, 0]
    assert state.add_app([(0, MIB)]) == 2  # ids are not reused
    with pytest.raises(ValueError, match="unknown app 0"):
        state.node_of_page(app)
    check_invariants(state)


def test_many_apps_come_and_go_and_the_page_table_stays_consistent() -> None:
    state = MemoryState([64 * MIB, 64 * MIB], page_size=MIB)
    live = []
    for i in range(60):
        app = state.add_app([(0, (i % 7 + 1) * 200 * MIB)])
        state.allocate(app, [0, 1], [1, 1])
        live.append(app)
        if i % 3:
            state.remove_app(live.pop(0))
        check_invariants(state)
    assert state.state_arrays()["page_node"].size < 20_000  # removed apps are compacted away


# ---- migration ----------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_migration_to_a_full_node_fails_and_counts_pgmigrate_fail(engine) -> None:
    state, app = two_node_state(engine)
    state.allocate_on(app, np.arange(6), 0)
    state.allocate_on(app, [6], 1)  # node 1: one free frame left
    result = state.migrate_pages(app, [4, 1, 2], 1)
    # Ascending address order: page 1 takes the last frame, pages 2 and 4 fail.
    assert (result.moved_pages, result.failed_pages) == (1, 2)
    assert state.node_of_page(app)[[1, 2, 4]].tolist() == [1, 0, 0]
    assert result.moved_matrix.tolist() == [[0, 1], [0, 0]]
    assert result.moved_bytes == MIB
    assert (state.pgmigrate_success, state.pgmigrate_fail) == (1, 2)
    # Frames freed within one request are taken by its later pages: page 1 frees a frame on
    # node 1 that page 3 takes, which frees one on node 0 that page 6 takes.
    result = state.migrate_pages(app, [1, 6, 3], [0, 0, 1])
    assert (result.moved_pages, result.failed_pages) == (3, 0)
    assert state.migrated_pages_matrix.tolist() == [[0, 2], [2, 0]]
    assert (state.pgmigrate_success, state.pgmigrate_fail) == (4, 2)
    check_invariants(state)


@pytest.mark.parametrize("engine", ENGINES)
def test_migration_skips_what_the_kernel_skips(engine) -> None:
    state = MemoryState([8 * MIB, 8 * MIB, 0], page_size=MIB, engine=engine)
    app = state.add_app([(0, 8 * MIB)])
    state.allocate_on(app, [0, 1, 2, 3], 0)
    before = state.state_arrays()
    # Already there, -1 (stay), a node out of range, a memory-less node, a page not resident.
    result = state.migrate_pages(app, [0, 1, 2, 3, 5], [0, -1, 7, 2, 1])
    assert (result.moved_pages, result.failed_pages, result.moved_bytes) == (0, 0, 0)
    assert not result.moved_matrix.any()
    for name, array in state.state_arrays().items():
        assert np.array_equal(array, before[name]), name


@pytest.mark.parametrize("engine", ENGINES)
def test_vaddr_dests_follow_the_interleave_arithmetic_and_leave_settled_pages(engine) -> None:
    state = MemoryState([64 * MIB, 64 * MIB], page_size=MIB, engine=engine)
    app = state.add_app([(256 * MIB, 32 * MIB), (512 * MIB, 8 * MIB)])
    state.allocate_on(app, np.arange(40), 0)
    result = state.migrate_vaddr_range_to_dests(app, 0, 1 << 40, [0, 1], [3, 1])
    ilx = state.app_page_vaddr(app) // MIB
    assert np.array_equal(state.node_of_page(app), dests_nid(ilx, [0, 1], [3, 1]))
    assert result.moved_pages == 10 and result.failed_pages == 0
    # Pages placed by weighted interleave with the same weights are already where the dests
    # (ascending node order) send them: nothing moves.
    again = state.migrate_vaddr_range_to_dests(app, 0, 1 << 40, [0, 1], [3, 1])
    assert again.moved_pages == 0
    other = state.add_app([(0, 16 * MIB)])
    state.allocate(other, np.arange(16), [3, 1])
    assert state.migrate_vaddr_range_to_dests(other, 0, 16 * MIB, [0, 1], [3, 1]).moved_pages == 0
    # Zero total weight: the kernel migrates nothing.
    assert state.migrate_vaddr_range_to_dests(app, 0, 1 << 40, [0, 1], [0, 0]).moved_pages == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_vaddr_ranges_cover_every_page_they_touch(engine) -> None:
    state = MemoryState([64 * MIB, 64 * MIB], page_size=MIB, engine=engine)
    app = state.add_app([(16 * MIB, 8 * MIB)])
    state.allocate_on(app, np.arange(8), 0)
    # [17.5 MiB, 19 MiB) touches pages at 17 and 18 MiB.
    result = state.migrate_vaddr_range_to_node(app, 17 * MIB + MIB // 2, 19 * MIB, 1)
    assert result.moved_pages == 2
    assert state.node_of_page(app).tolist() == [0, 1, 1, 0, 0, 0, 0, 0]
    assert state.migrate_vaddr_range_to_node(app, 19 * MIB, 19 * MIB, 1).moved_pages == 0
    assert state.migrate_vaddr_range_to_node(app, 0, 16 * MIB, 1).moved_pages == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_paddr_migration_moves_the_pages_in_a_physical_range(engine) -> None:
    state = MemoryState([8 * MIB, 8 * MIB], page_size=MIB, engine=engine)
    a = state.add_app([(0, 4 * MIB)])
    b = state.add_app([(0, 4 * MIB)])
    state.allocate_on(a, [0, 1], 0)  # frames 0, 1
    state.allocate_on(b, [0, 1, 2], 0)  # frames 2, 3, 4
    start, _ = state.node_phys_range(0)
    result = state.migrate_phys_range_to_node(start + MIB + 1, start + 3 * MIB, 1)  # frames 1, 2
    assert result.moved_pages == 2
    assert state.node_of_page(a).tolist() == [0, 1, -1, -1]
    assert state.node_of_page(b).tolist() == [1, 0, 0, -1]
    # The whole of node 0 to node 1, then a range beyond memory: nothing there.
    assert state.migrate_phys_range_to_node(*state.node_phys_range(0), 1).moved_pages == 3
    assert state.migrate_phys_range_to_node(0, 1 << 30, 0).moved_pages == 0
    assert state.migrate_phys_range_to_node(1 << 40, 1 << 41, 0).moved_pages == 0
    check_invariants(state)


def test_bad_migration_requests_name_the_problem() -> None:
    state, app = two_node_state("auto")
    with pytest.raises(ValueError, match="page 3 appears twice"):
        state.migrate_pages(app, [3, 1, 3], 1)
    with pytest.raises(ValueError, match=r"page index 16 is outside 0\.\.15"):
        state.migrate_pages(app, [16], 1)
    with pytest.raises(ValueError, match="one node or one per page"):
        state.migrate_pages(app, [1, 2], [1, 0, 1])
    with pytest.raises(ValueError, match="dest_nodes is empty"):
        state.migrate_vaddr_range_to_dests(app, 0, 1 << 40, [], [])
    with pytest.raises(ValueError, match="one weight per dest"):
        state.migrate_vaddr_range_to_dests(app, 0, 1 << 40, [0, 1], [1])
    with pytest.raises(ValueError, match="dest 1 has weight -2"):
        state.migrate_vaddr_range_to_dests(app, 0, 1 << 40, [0, 1], [1, -2])
    with pytest.raises(TypeError, match="dest_weights must be integers"):
        state.migrate_vaddr_range_to_dests(app, 0, 1 << 40, [0, 1], [1.5, 1])


# ---- views and snapshots ------------------------------------------------------------------


def test_frame_values_scatter_page_values_onto_frames() -> None:
    state = MemoryState([4 * MIB, 4 * MIB], page_size=MIB)
    a = state.add_app([(0, 3 * MIB)])
    b = state.add_app([(0, 2 * MIB)])
    state.allocate_on(a, [0, 2], 1)  # frames 4, 5
    state.allocate_on(b, [1], 0)  # frame 0
    values = state.frame_values({a: np.array([1.0, 2.0, 3.0]), b: np.array([7.0, 8.0])})
    assert values.tolist() == [8.0, 0, 0, 0, 1.0, 3.0, 0, 0]
    with pytest.raises(ValueError, match="one entry per page"):
        state.frame_values({a: np.ones(2)})


def test_copy_is_independent() -> None:
    state, app = two_node_state("auto")
    state.allocate(app, [0, 1], [1, 1])
    snapshot = state.copy()
    state.migrate_pages(app, [0, 1], 1)
    state.add_app([(0, MIB)])
    assert snapshot.node_of_page(app).tolist()[:2] == [0, 1]
    assert snapshot.pgmigrate_success == 0 and snapshot.app_ids == (app,)
    check_invariants(snapshot)
    check_invariants(state)


# ---- properties ---------------------------------------------------------------------------


@st.composite
def scenarios(draw):
    """A host, its applications and a seed for a sequence of requests."""
    n_nodes = draw(st.integers(1, 4))
    capacity = [draw(st.integers(0, 12)) for _ in range(n_nodes)]
    capacity[draw(st.integers(0, n_nodes - 1))] += 1
    page = draw(st.sampled_from([4096, 1 << 21]))
    apps = []
    for _ in range(draw(st.integers(1, 3))):
        starts = sorted(draw(st.sets(st.integers(0, 40), min_size=1, max_size=3)))
        vmas, end = [], -1
        for start in starts:
            if start > end:
                size = draw(st.integers(1, 8))
                vmas.append((start * page, size * page))
                end = start + size
        apps.append(vmas)
    return capacity, page, apps, draw(st.integers(0, 2**32 - 1))


KINDS = ["allocate"] * 3 + ["migrate_pages", "dests", "to_node", "phys"] * 2
KINDS += ["allocate_on", "free", "remove", "add"]


def request(state: MemoryState, rng: np.random.Generator, apps) -> tuple:
    """A random request; mostly valid, sometimes out of range, repeated or resident."""
    kind = KINDS[rng.integers(len(KINDS))]
    n = state.n_nodes
    if kind == "add" or not state.app_ids:
        return ("add", apps[rng.integers(len(apps))])
    app = state.app_ids[rng.integers(len(state.app_ids))]
    count = len(state.app_page_vaddr(app))
    raw = rng.random() < 0.1
    pages = rng.integers(0, count + (3 if raw else 0), rng.integers(0, 2 * count + 1))
    if kind in ("allocate", "allocate_on") and not raw:
        pages = np.array(
            [p for p in dict.fromkeys(pages.tolist()) if state.node_of_page(app)[p] < 0]
        )
    node = int(rng.integers(-1 if raw else 0, n + (1 if raw else 0)))
    span = max(int(state.app_page_vaddr(app)[-1]) // state.page_size + 2, 2)
    start, end = sorted(rng.integers(0, span, 2).tolist())
    if kind == "allocate":
        mask = None if rng.random() < 0.5 else rng.choice(n, rng.integers(1, n + 1), False)
        return (kind, app, pages, rng.integers(1, 5, n), mask)
    if kind == "allocate_on":
        return (kind, app, pages, max(node, 0) % n)
    if kind == "free":
        return (kind, app, pages)
    if kind == "migrate_pages":
        return (kind, app, np.unique(pages), rng.integers(-1, n + 1, np.unique(pages).size))
    if kind == "dests":
        nr = rng.integers(1, 4)
        return (kind, app, start, end, rng.integers(-1, n + 1, nr), rng.integers(0, 4, nr))
    if kind == "to_node":
        return (kind, app, start, end, node)
    if kind == "phys":
        start, end = sorted(rng.integers(-2, state.n_frames + 2, 2).tolist())
        return (kind, start, end, node)
    return (kind, app)


def apply(state: MemoryState, op: tuple):
    """Apply one request; returns what it returned or raised, in comparable form."""
    kind, *args = op
    page = state.page_size
    before = state.used_pages
    try:
        if kind == "add":
            out = state.add_app(args[0])
        elif kind == "allocate":
            out = state.allocate(*args)
        elif kind == "allocate_on":
            out = state.allocate_on(*args)
        elif kind == "free":
            out = state.free(*args)
        elif kind == "migrate_pages":
            out = state.migrate_pages(*args)
        elif kind == "dests":
            app, start, end, nodes, weights = args
            out = state.migrate_vaddr_range_to_dests(app, start * page, end * page, nodes, weights)
        elif kind == "to_node":
            app, start, end, node = args
            out = state.migrate_vaddr_range_to_node(app, start * page, end * page, node)
        elif kind == "phys":
            start, end, node = args
            base = state.phys_base
            out = state.migrate_phys_range_to_node(base + start * page, base + end * page, node)
        else:
            out = state.remove_app(args[0])
    except (ValueError, OutOfMemory) as error:
        return (type(error).__name__, str(error))
    if isinstance(out, MigrationResult):
        # Migrations move pages between nodes but never past a node's free frames.
        change = out.moved_matrix.sum(axis=0) - out.moved_matrix.sum(axis=1)
        assert np.array_equal(state.used_pages - before, change)
        assert out.moved_pages == out.moved_matrix.sum()
        return ("migrated", out.moved_pages, out.failed_pages, out.moved_matrix.tolist())
    return out.tolist() if isinstance(out, np.ndarray) else out


def run(engine: str, scenario, n_requests: int = 40) -> tuple[MemoryState, list]:
    capacity, page, apps, seed = scenario
    state = MemoryState([c * page for c in capacity], page, engine=engine)
    for vmas in apps:
        state.add_app(vmas)
    rng = np.random.default_rng(seed)
    outcomes = []
    for _ in range(n_requests):
        outcomes.append(apply(state, request(state, rng, apps)))
        check_invariants(state)
    return state, outcomes


@PROPERTY_SETTINGS
@given(scenarios())
def test_random_requests_conserve_pages_and_the_kernels_match_the_reference(scenario) -> None:
    reference, expected = run("reference", scenario)
    for engine in ENGINES[1:]:
        compiled, outcomes = run(engine, scenario)
        assert outcomes == expected
        for name, array in compiled.state_arrays().items():
            assert np.array_equal(array, reference.state_arrays()[name]), name
    # Deterministic: the same requests give the same state and outcomes.
    assert run("auto", scenario)[1] == expected


MiB = 1 << 20


def test_batched_range_migrations_equal_one_call_per_range():
    def build(engine):
        memory = MemoryState([80 * MiB, 80 * MiB], page_size=2 * MiB, engine=engine)
        app = memory.add_app([(0x10000000, 32 * 2 * MiB)])
        memory.allocate_on(app, np.arange(32), 1)
        return memory, app

    starts = np.array([0x10000000, 0x10000000 + 10 * 2 * MiB, 0x10000000 + 20 * 2 * MiB])
    ends = starts + 6 * 2 * MiB
    nodes, weights = np.array([0, 1]), np.array([3, 1])
    one_by_one, app = build("auto")
    expected = [
        one_by_one.migrate_vaddr_range_to_dests(app, s, e, nodes, weights).moved_pages
        for s, e in zip(starts, ends, strict=True)
    ]
    for engine in ("auto", "reference"):
        batched, app = build(engine)
        per_range, total = batched.migrate_vaddr_ranges(app, starts, ends, nodes, weights)
        assert per_range.tolist() == expected
        assert total.moved_pages == sum(expected)
        assert batched.state_arrays()["page_node"].tolist() == (
            one_by_one.state_arrays()["page_node"].tolist()
        )
    # physical ranges: node 1's first 8 frames to node 0, in two ranges
    low, _ = batched.node_phys_range(1)
    per_range, total = batched.migrate_phys_ranges(
        np.array([low, low + 4 * 2 * MiB]), np.array([low + 4 * 2 * MiB, low + 8 * 2 * MiB]), 0
    )
    assert total.moved_pages == per_range.sum() and len(per_range) == 2
