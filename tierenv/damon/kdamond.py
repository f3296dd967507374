"""A simulated kdamond: one DAMON context with its DAMOS schemes over a ``MemoryState``.

The main loop follows ``kdamond_fn`` (mm/damon/core.c, Linux 6.17/6.18) step for step::

    watermarks -> sample accesses -> [aggregation: merge + age] -> apply due schemes
    -> [aggregation: tune intervals, reset counters, split] -> [update: vaddr re-reads VMAs]

Sampling runs in stretches of sample intervals between those events; a stretch draws each
region's access count from its exact distribution (see ``kernels.sample_segment``), which is
why the simulator can run thousands of times faster than real time while keeping DAMON's
noise, lag and region dynamics.

DAMOS passes run one of two ways, with the same results: region by region as the kernel walks
them (``_apply_to_region``: quotas, filters, several schemes), or, for a lone scheme without
filters, compiled: ``kernels.simple_pass`` without a quota, ``kernels.quota_pass`` with one
(the score cut, charge-window skips and quota cuts as the region-by-region pass does them),
called alone or from inside the compiled aggregation loop (``kernels.run_aggregations``) when
it applies at aggregation ends (with a quota, a size-only one, whose charge window the loop
rolls itself). The loop also runs past ops updates that would change nothing (the mappings
as fitted), so one simulated second of the default setup is one compiled call. The first way
is the reference that tests hold the others to; all book what they did in one place
(``Kdamond._account``).

Simulator conventions (stated once here):
- DAMON's minimum region (``DAMON_MIN_REGION``, PAGE_SIZE in the kernel) is the simulated
  page size: with 2 MiB pages a region never splits inside a huge page, whose single
  Accessed bit the kernel would report for every 4 KiB of it anyway.
- Accesses: ``set_access_rates(app, rates)`` gives each page's rate of touches that set its
  Accessed bit (per second); the page counts as accessed in a sample interval with
  probability 1 - exp(-rate * interval). Non-resident pages are never accessed.
- Time spent applying an action (charged to the ``ms`` quota) is modelled: a page-table walk
  cost per page looked at plus ``MigrationCost`` for the pages moved.
- The kernel's ``kdamond_split_regions`` keeps ``last_nr_regions`` in a static variable shared
  by every kdamond; here each context keeps its own.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tierenv.contracts.measurements import SchemeStats
from tierenv.damon import kernels
from tierenv.damon.abi import MIGRATE_ACTIONS
from tierenv.damon.config import ContextConfig, MonitoringAttrs, Quotas, Scheme
from tierenv.damon.quota import (
    QuotaState,
    effective_quota,
    feed_loop_next_input,
    hot_score,
    hot_scores,
    min_score_for,
)
from tierenv.damon.regions import RegionTable
from tierenv.damon.rng import new_state
from tierenv.memory.migration_cost import MigrationCost
from tierenv.memory.state import MemoryState

# compiled quota passes keep quota sizes and charges below this (int64 with room to spare; no
# sum of region sizes comes near it)
QUOTA_COMPILED_LIMIT = 2**61
WALK_NS_PER_PAGE = 50  # assumed page-table walk cost per simulated page looked at by an action
VALIDATED_CACHE_SIZE = 4096  # configurations ``Kdamond.commit`` remembers having checked
AGGREGATED_FIELDS = kernels.Snapshot._fields  # ("target", "start", "end", "nr", "age")
# placeholders of a disabled pass (``Kdamond._no_pass``): nothing reads or writes them
_NOTHING = np.zeros(1, dtype=np.int64)
_NO_PATTERN = np.zeros(6, dtype=np.int64)
_NO_RESULTS = kernels.PassResults.zeros(1, 1)
_NO_QUOTA_STATE = kernels.QuotaState.empty()


@dataclass(frozen=True)
class TriedRegion:
    """One entry of ``tried_regions/``: a region the scheme tried in its last apply pass."""

    target: int
    start: int
    end: int
    nr_accesses: int
    age: int
    sz_filter_passed: int


@dataclass
class SchemeRuntime:
    config: Scheme
    next_apply_sis: int = 0
    activated: bool = True
    quota: QuotaState = field(default_factory=QuotaState)
    stats: SchemeStats = field(default_factory=SchemeStats)
    # regions tried in the last apply pass: (target, start, end, nr_accesses, age,
    # sz_filter_passed) columns, kept as arrays and turned into records only when asked
    tried_columns: tuple[np.ndarray, ...] = ()
    tried_rows: list[tuple[int, ...]] = field(default_factory=list)
    # (config, (nodes, weights)) of the last ``Kdamond._dests`` lookup
    dests_cache: tuple | None = field(default=None, repr=False, compare=False)
    # (config, pattern bounds, target apps) of the last ``Kdamond._pass_params``
    pass_cache: tuple | None = field(default=None, repr=False, compare=False)
    # (config, compiled quota pass, inside the loop) of the last ``Kdamond._quota_kind``
    quota_kind_cache: tuple | None = field(default=None, repr=False, compare=False)
    # ((config, attrs, roll), params) of the last ``Kdamond._quota_params``
    quota_params_cache: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def tried_regions(self) -> list[TriedRegion]:
        """``tried_regions/``: the regions this scheme tried in its last apply pass."""
        if self.tried_columns:
            rows = zip(*(column.tolist() for column in self.tried_columns), strict=True)
            return [TriedRegion(*row) for row in rows]
        return [TriedRegion(*row) for row in self.tried_rows]

    @property
    def tried_bytes(self) -> int:
        """``tried_regions/total_bytes``."""
        return sum(region.end - region.start for region in self.tried_regions)

    @property
    def effective_bytes(self) -> int:
        return self.quota.esz


class Kdamond:
    """One simulated DAMON context (kdamond) monitoring applications of a ``MemoryState``.

    ``config.targets[i].pid`` names the application id in ``memory``. Build it, give it access
    rates, and call ``run(duration_us)``; change parameters online with ``commit(config)``.
    """

    # A pass of one scheme without quota or filters runs compiled (``kernels.simple_pass``),
    # inside the compiled aggregation loop where it can; the same results as the general
    # region-by-region pass, which tests check by switching these off.
    simple_pass_enabled = True
    inline_pass_enabled = True
    # A pass of one scheme with a quota and no filters runs compiled too
    # (``kernels.quota_pass``), the same way (both switched off with simple_pass_enabled).
    quota_pass_enabled = True

    def __init__(
        self,
        config: ContextConfig,
        memory: MemoryState,
        seed: int | np.random.SeedSequence = 0,
        migration_cost: MigrationCost | None = None,
    ) -> None:
        config.validate(node_has_memory=list(memory.node_has_memory))
        self.config = config
        self.memory = memory
        self.migration_cost = migration_cost or MigrationCost()
        # whole nanoseconds, so that charged time adds up the same however passes group pages
        self._migration_ns_per_page = round(
            self.migration_cost.seconds_per_folio(memory.page_size) * 1e9
        )
        self._dests_cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._phys_base = memory.node_phys_range(0)[0]
        self._results_buffer: kernels.PassResults | None = None
        # configurations whose cross-object checks passed against this memory (by id; the
        # entries keep them alive): commit checks a revisited configuration once
        self._validated: dict[int, ContextConfig] = {}
        # (residency generation, fitted ranges, whether an update would leave them)
        self._fold_cache: tuple | None = None
        self._three_regions_cache: dict[tuple, tuple[tuple[int, int], ...]] = {}
        self.attrs: MonitoringAttrs = config.attrs
        self.min_region = memory.page_size
        self._rng = new_state(seed)
        self.regions = RegionTable(max(2 * config.attrs.max_nr_regions, 64))
        self.schemes = [SchemeRuntime(scheme) for scheme in config.schemes]
        self._rates: dict[int, np.ndarray] = {}
        self._probabilities_dirty = True
        self._sampling_index: kernels.SamplingIndex | None = None
        self._indexed_generation = -1
        self._snapshot_buffer = kernels.Snapshot(
            *np.zeros((len(AGGREGATED_FIELDS), 0), dtype=np.int64)
        )
        self._last_nr_regions = 0
        self._max_nr_accesses_seen = 0
        self.now_us = 0.0  # the kdamond's clock: sample intervals and sleeps done
        self.target_us = 0.0  # simulated time asked for by run() so far
        self.migrated_pages = np.zeros((memory.n_nodes, memory.n_nodes), dtype=np.int64)
        self._init_ctx()
        self._init_regions()
        self._keep_aggregated()
        self.sz_limit = self._region_sz_limit()

    # ------------------------------------------------------------------ public interface
    @property
    def operations(self) -> str:
        return self.config.operations

    @property
    def passed_sample_intervals(self) -> int:
        return self.passed

    def set_access_rates(self, app: int, rates: np.ndarray) -> None:
        """Per-page touch rates (1/s) of application ``app``, indexed like its pages."""
        rates = np.asarray(rates, dtype=np.float64)
        expected = len(self.memory.app_page_vaddr(app))
        if rates.shape != (expected,):
            raise ValueError(
                f"access rates of app {app}: expected {expected} pages, got {rates.shape}"
            )
        if not kernels.finite_non_negative(rates):
            raise ValueError(f"access rates of app {app} must be finite and non-negative")
        self._rates[app] = rates
        self._probabilities_dirty = True

    def set_goal_input(self, scheme: int, goal: int, value: int) -> None:
        """Write a ``user_input`` goal's current_value (then ``commit_schemes_quota_goals``)."""
        runtime = self.schemes[scheme]
        goals = runtime.config.quotas.goals
        if goals[goal].target_metric != "user_input":
            raise ValueError(f"schemes[{scheme}].quotas.goals[{goal}] is not a user_input goal")
        runtime.quota.goal_values[goal] = int(value)

    def run(self, duration_us: float) -> None:
        """Advance simulated time by ``duration_us`` microseconds.

        The kdamond keeps its own clock: a sample interval that does not fit in this call
        runs in a later one, so time is never lost however ``run`` is called (with sample
        intervals tuned past the call length, some calls do nothing)."""
        self.target_us += duration_us
        end_us = self.target_us
        while True:
            sample_us = max(self.attrs.sample_us, 1)
            if self.now_us + sample_us > end_us + 1e-6:
                return
            wait_us = self._wait_activation()
            if wait_us:
                self.now_us += wait_us  # the sleep may run past this call's end
                continue
            budget = int((end_us - self.now_us + 1e-6) // sample_us)
            if self._fast_aggregations(budget):
                continue
            due = [s.next_apply_sis for s in self.schemes if s.activated]
            event = min([self.next_aggregation_sis, self.next_ops_update_sis, *due])
            samples = max(1, min(event - self.passed, budget))
            self._sample(samples)
            self.now_us += samples * sample_us
            self._after_samples()

    def _fast_aggregations(self, budget: int) -> bool:
        """Run, in one compiled call, every whole aggregation interval that ends before the
        next ops update, interval tuning or scheme application (except the applications of
        a lone simple vaddr scheme at aggregation ends, which the compiled loop does itself)
        and within ``budget`` samples. Returns False if there is none (the step-by-step path
        handles it)."""
        attrs = self.attrs
        aggr_samples = attrs.aggr_us // max(attrs.sample_us, 1)
        if aggr_samples < 1:
            return False
        inline = self._inline_scheme(aggr_samples)
        fold_updates = self._updates_fold(aggr_samples)
        count = self._whole_aggregations(budget, aggr_samples, inline, fold_updates)
        if not count:
            return False
        sampling_index = self._current_sampling_index()
        table = self.regions
        table.reserve(max(3 * table.n, 3 * attrs.max_nr_regions // 2 + 3) + 2)
        self._reserve_snapshot(table.capacity)
        first_samples = self.next_aggregation_sis - self.passed
        quota, quota_state = None, None
        if inline is None:
            scheme, results = self._no_pass()
        else:
            scheme = self._pass_params(inline)
            results = self._pass_results(table.capacity)
            if not self._pass_is_simple(inline):  # a size quota, rolled in the loop
                quota = self._quota_params(inline, roll=True)
                quota_state = self._quota_state(inline)
        # kernels.run_aggregations' call, its structs built as the plain tuples it passes on
        # (this runs every simulated second of every kdamond)
        done = kernels.Aggregated(
            *kernels._run_aggregations(
                count,
                first_samples,
                table.n,
                self._last_nr_regions,
                (
                    self.min_region,
                    aggr_samples,
                    attrs.max_nr_accesses,
                    self.sz_limit,
                    attrs.max_nr_regions,
                ),
                (table.arrays(), table.spare_arrays(), tuple(self._snapshot_buffer), self._rng),
                tuple(sampling_index),
                tuple(scheme),
                (results.moved, results.totals, tuple(results.tried)),
                tuple(quota if quota is not None else kernels.NO_QUOTA),
                tuple(quota_state if quota_state is not None else _NO_QUOTA_STATE),
            )
        )
        if done.swapped:
            table.swap_spare(done.n)
        else:
            table.n = done.n
        self._last_nr_regions = done.last_nr_regions
        target, start, end, nr, age = _copied_columns(self._snapshot_buffer, done.snapshot_n)
        self._aggregated = {"target": target, "start": start, "end": end, "nr": nr, "age": age}
        samples = first_samples + (count - 1) * aggr_samples
        self.passed += samples
        self.next_aggregation_sis += count * aggr_samples
        self.now_us += samples * max(attrs.sample_us, 1)
        if fold_updates:  # the updates passed changed nothing but their countdown
            update_samples = attrs.update_us // max(attrs.sample_us, 1)
            while self.next_ops_update_sis <= self.passed:
                self.next_ops_update_sis += update_samples
        if inline is not None:
            inline.next_apply_sis = self.passed + done.next_apply
            if done.tried_n >= 0:
                self._book_compiled_pass(inline, results, done.tried_n)
                if quota_state is not None:
                    self._take_quota_state(inline, quota_state, roll=True)
        return True

    def _updates_fold(self, aggr_samples: int) -> bool:
        """Whether the compiled loop may run past ops updates: each falls on an aggregation
        end and would change nothing (vaddr's three regions as fitted, paddr's fixed
        regions, the same region size limit), so only its countdown moves."""
        update_samples = self.attrs.update_us // max(self.attrs.sample_us, 1)
        offset = self.next_ops_update_sis - self.next_aggregation_sis
        if update_samples < 1 or update_samples % aggr_samples or offset < 0:
            return False
        if offset % aggr_samples or self._region_sz_limit() != self.sz_limit:
            return False
        if self.operations != "vaddr":
            return True
        # mappings change only with the residency generation: compare once per generation
        generation = self.memory.residency_generation
        cached = self._fold_cache
        if cached is not None and cached[0] == generation and cached[1] is self._fitted_ranges:
            return cached[2]
        try:
            ranges_now = [self._three_regions(target.pid) for target in self.config.targets]
        except ValueError:  # an application is gone: the update itself will say so
            return False
        unchanged = ranges_now == self._fitted_ranges
        self._fold_cache = (generation, self._fitted_ranges, unchanged)
        return unchanged

    def _whole_aggregations(
        self,
        budget: int,
        aggr_samples: int,
        inline: SchemeRuntime | None,
        fold_updates: bool = False,
    ) -> int:
        """How many aggregation intervals ``_fast_aggregations`` can run: those ending strictly
        before every other event (ops updates that ``_updates_fold`` lets it pass aside) and
        within ``budget`` samples."""
        events = [self.passed + budget + 1]
        if not fold_updates:
            events.append(self.next_ops_update_sis)
        events += [s.next_apply_sis for s in self.schemes if s.activated and s is not inline]
        if self.attrs.intervals_goal.aggrs:
            events.append(self.next_intervals_tune_sis)
        horizon = min(events)
        if self.next_aggregation_sis >= horizon:
            return 0
        return (horizon - 1 - self.next_aggregation_sis) // aggr_samples + 1

    def _inline_scheme(self, aggr_samples: int) -> SchemeRuntime | None:
        """The scheme the compiled loop may apply itself: the only one, active, vaddr (paddr's
        sampling index changes when pages move), simple (``_pass_is_simple``) or with a size
        quota (``_quota_pass_inlines``), applying exactly at aggregation ends."""
        if not (self.simple_pass_enabled and self.inline_pass_enabled):
            return None
        if self.operations != "vaddr" or len(self.schemes) != 1:
            return None
        runtime = self.schemes[0]
        if not runtime.activated:
            return None
        if not self._pass_is_simple(runtime) and not self._quota_pass_inlines(runtime):
            return None
        apply_samples = self._apply_interval(runtime) // max(self.attrs.sample_us, 1)
        offset = runtime.next_apply_sis - self.next_aggregation_sis
        if apply_samples % aggr_samples or offset < 0 or offset % aggr_samples:
            return None
        return runtime

    def _pass_params(self, runtime: SchemeRuntime) -> kernels.PassParams:
        """``simple_pass``'s parameters for a scheme that ``_pass_is_simple`` accepted."""
        scheme = runtime.config
        cached = runtime.pass_cache
        if cached is None or cached[0] is not scheme:
            pattern = scheme.access_pattern
            bounds = (
                pattern.sz.min,
                pattern.sz.max,
                pattern.nr_accesses.min,
                pattern.nr_accesses.max,
                pattern.age.min,
                pattern.age.max,
            )
            # fixed while the scheme's configuration is (targets never change)
            cached = (
                scheme,
                np.array([min(b, kernels.INT64_MAX) for b in bounds], dtype=np.int64),
                np.array([t.pid for t in self.config.targets], dtype=np.int64),
            )
            runtime.pass_cache = cached
        _, pattern_array, target_apps = cached
        nodes, weights = self._dests(runtime)
        mem, shift = self.memory.compiled_tables()
        return kernels.PassParams(
            enabled=True,
            next_apply=runtime.next_apply_sis - self.passed,
            apply_samples=self._apply_interval(runtime) // max(self.attrs.sample_us, 1),
            pattern=pattern_array,
            migrate=scheme.action != "stat",
            paddr=self.operations == "paddr",
            target_apps=target_apps,
            dest_nodes=nodes,
            dest_weights=weights,
            mem=mem,
            shift=shift,
            phys_base=self._phys_base,
        )

    def _pass_results(self, capacity: int) -> kernels.PassResults:
        """Zeroed results for a compiled pass with room for ``capacity`` tried regions (one
        buffer reused: ``_book_compiled_pass`` copies out what it keeps)."""
        results = self._results_buffer
        if results is None or len(results.tried.start) < capacity:
            results = kernels.PassResults.zeros(capacity, self.memory.n_nodes)
            self._results_buffer = results
        else:
            results.moved[:] = 0
            results.totals[:] = 0
        return results

    def _no_pass(self) -> tuple[kernels.PassParams, kernels.PassResults]:
        """``run_aggregations``'s scheme and results when it applies none: ``enabled`` is
        False and the rest are unused placeholders of a real pass's types (so that one
        compiled version serves both)."""
        mem, shift = self.memory.compiled_tables()
        nothing = _NOTHING  # positional, as the fields' names say nothing here
        params = kernels.PassParams(
            False, 0, 1, _NO_PATTERN, False, False, nothing, nothing, nothing, mem, shift, 0
        )
        return params, _NO_RESULTS

    def _book_compiled_pass(
        self, runtime: SchemeRuntime, results: kernels.PassResults, tried_n: int
    ) -> None:
        """Carry compiled passes' results into the memory's counters, the kdamond's and the
        scheme (quota, stats and its last pass's tried regions)."""
        done = results.sums()
        self.memory.record_migrations(results.moved, done.failed_pages)
        self.migrated_pages += results.moved
        self._account(
            runtime,
            done.nr_tried,
            done.sz_tried,
            done.nr_applied,
            done.moved_pages,
            done.walked_pages,
            done.sz_filter_passed,
        )
        runtime.tried_rows = []
        runtime.tried_columns = _copied_columns(results.tried, tried_n)

    def _reserve_snapshot(self, capacity: int) -> None:
        if len(self._snapshot_buffer.start) < capacity:
            # the rows of one block: ``_copied_columns`` keeps a snapshot with one copy
            block = np.zeros((len(AGGREGATED_FIELDS), capacity), dtype=np.int64)
            self._snapshot_buffer = kernels.Snapshot(*block)

    def commit(self, config: ContextConfig) -> None:
        """``commit``: apply new parameters online (``damon_commit_ctx``); nothing changes if
        the new configuration is invalid. Regions, stats and quota state persist; as in the
        kernel (``damon_set_attrs``), the aggregation in progress is discarded and the
        aggregation, update and apply countdowns restart, so committing more often than the
        aggregation interval starves monitoring and DAMOS alike."""
        # Frozen configs were checked field by field when built; what is left to check here
        # spans objects (targets vs operations, node ids vs the host).
        if self._validated.get(id(config)) is not config:
            config.validate(node_has_memory=list(self.memory.node_has_memory), recheck_fields=False)
            if len(self._validated) >= VALIDATED_CACHE_SIZE:
                self._validated.clear()
            self._validated[id(config)] = config
        if config.operations != self.config.operations:
            raise ValueError("operations: changing the operations set is not simulated")
        if [(t.pid, t.regions) for t in config.targets] != [
            (t.pid, t.regions) for t in self.config.targets
        ]:
            raise ValueError(
                "targets: changing the targets or their regions of a running context is not "
                "simulated"
            )
        old = self.schemes
        self.schemes = []
        for i, scheme in enumerate(config.schemes):
            runtime = old[i] if i < len(old) else SchemeRuntime(scheme)
            kept_values = runtime.quota.goal_values
            runtime.config = scheme
            runtime.activated = True  # damos_commit copies the source's fresh watermarks
            runtime.quota.goal_values = [g.current_value for g in scheme.quotas.goals]
            for k, goal in enumerate(scheme.quotas.goals):
                if goal.target_metric != "user_input" and k < len(kept_values):
                    runtime.quota.goal_values[k] = kept_values[k]
            self.schemes.append(runtime)
        self.config = config
        self._set_attrs(config.attrs)

    def snapshot(self) -> Kdamond:
        """A deep copy (sharing nothing): for branching evaluations. Copy the memory state
        together with it (``copy.deepcopy((memory, kdamond))``) to keep them linked."""
        return copy.deepcopy(self)

    @property
    def nr_regions(self) -> int:
        """Regions at the last completed aggregation (before its split)."""
        return len(self._aggregated["start"])

    def aggregated_regions(self, with_target: bool = True) -> dict[str, np.ndarray]:
        """Copies of the last aggregation's region columns: target (unless not
        ``with_target``), start, end, nr_accesses, age (as ``region_records``, as arrays)."""
        snapshot = self._aggregated
        columns = {"target": snapshot["target"].copy()} if with_target else {}
        columns["start"] = snapshot["start"].copy()
        columns["end"] = snapshot["end"].copy()
        columns["nr_accesses"] = snapshot["nr"].copy()
        columns["age"] = snapshot["age"].copy()
        return columns

    def region_records(self) -> list[dict[str, int]]:
        """The regions of the last completed aggregation with their counts and ages, as the
        kernel's ``damon_aggregated`` tracepoint (and so ``damo record``) reports them: after
        the merge, before the split."""
        snapshot = self._aggregated
        return [
            {"target": int(t), "start": int(s), "end": int(e), "nr_accesses": int(n), "age": int(a)}
            for t, s, e, n, a in zip(
                snapshot["target"],
                snapshot["start"],
                snapshot["end"],
                snapshot["nr"],
                snapshot["age"],
                strict=True,
            )
        ]

    def take_migrated_pages(self) -> np.ndarray:
        """Pages moved src -> dst since the last call (and reset the counter)."""
        moved = self.migrated_pages.copy()
        self.migrated_pages[:] = 0
        return moved

    # --------------------------------------------------------------------- initialisation
    def _init_ctx(self) -> None:
        """``kdamond_init_ctx``."""
        attrs = self.attrs
        sample = max(attrs.sample_us, 1)
        self.passed = 0
        self.next_aggregation_sis = attrs.aggr_us // sample
        self.next_ops_update_sis = attrs.update_us // sample
        self.next_intervals_tune_sis = self.next_aggregation_sis * attrs.intervals_goal.aggrs
        for runtime in self.schemes:
            runtime.next_apply_sis = self._apply_interval(runtime) // sample
            runtime.quota.goal_values = [g.current_value for g in runtime.config.quotas.goals]

    def _apply_interval(self, runtime: SchemeRuntime) -> int:
        return runtime.config.apply_interval_us or self.attrs.aggr_us

    def _init_regions(self) -> None:
        """``ops.init``: the user's regions, or (vaddr without them) the three regions split
        evenly (``damon_va_init``)."""
        self._fitted_ranges: Sequence[list[tuple[int, int]] | None] = [
            None if target.regions else self._three_regions(target.pid)
            for target in self.config.targets
        ]
        starts, ends, targets = [], [], []
        for index, target in enumerate(self.config.targets):
            if self.operations == "paddr" or target.regions:
                ranges = list(target.regions)
            else:
                ranges = self._initial_vaddr_regions(target.pid)
            for start, end in ranges:
                starts.append(start)
                ends.append(end)
                targets.append(index)
        self.regions.replace(starts, ends, targets)

    def _three_regions(self, app: int) -> list[tuple[int, int]]:
        """``damon_va_three_regions``: the span of the mappings without its two largest gaps.

        Real processes always have three or more mappings; a simulated one with fewer is
        covered by its mappings' spans as they are. A simulated application's mappings are
        fixed when it is added, so the result is computed once per mapping layout (every
        update interval asks again)."""
        vmas = self.memory.app_vmas(app)  # raises, as app_page_vaddr would, if it is gone
        cached = self._three_regions_cache.get(vmas)
        if cached is None:
            cached = self._three_regions_of(app)
            self._three_regions_cache[vmas] = cached
        return list(cached)

    def _three_regions_of(self, app: int) -> tuple[tuple[int, int], ...]:
        page_size = self.memory.page_size
        vaddr = self.memory.app_page_vaddr(app)
        if len(vaddr) == 0:
            return ()
        breaks = np.flatnonzero(np.diff(vaddr) != page_size)
        starts = np.concatenate(([vaddr[0]], vaddr[breaks + 1]))
        ends = np.concatenate((vaddr[breaks] + page_size, [vaddr[-1] + page_size]))
        if len(starts) < 3:
            return tuple((int(s), int(e)) for s, e in zip(starts, ends, strict=True))
        gaps = starts[1:] - ends[:-1]
        biggest = np.sort(np.argsort(-gaps, kind="stable")[:2])
        first, second = int(biggest[0]), int(biggest[1])
        return (
            (int(starts[0]), int(ends[first])),
            (int(starts[first + 1]), int(ends[second])),
            (int(starts[second + 1]), int(ends[-1])),
        )

    def _initial_vaddr_regions(self, app: int) -> list[tuple[int, int]]:
        """``__damon_va_init_regions``: three regions, each split evenly into pieces of about
        (their total size / min_nr_regions)."""
        three = self._three_regions(app)
        total = sum(end - start for start, end in three)
        piece = max(total // self.attrs.min_nr_regions, self.min_region)
        ranges = []
        for start, end in three:
            nr_pieces = (end - start) // piece
            ranges.extend(self._evenly_split(start, end, nr_pieces))
        return ranges

    def _evenly_split(self, start: int, end: int, nr_pieces: int) -> list[tuple[int, int]]:
        """``damon_va_evenly_split_region``."""
        if nr_pieces <= 1:
            return [(start, end)]
        size = (end - start) // nr_pieces // self.min_region * self.min_region
        if size == 0:
            return [(start, end)]
        pieces: list[tuple[int, int]] = []
        cursor = start
        while cursor + size <= end and len(pieces) < nr_pieces:
            pieces.append((cursor, cursor + size))
            cursor += size
        last_start, _ = pieces[-1]
        pieces[-1] = (last_start, end)
        return pieces

    def _region_sz_limit(self) -> int:
        """``damon_region_sz_limit``."""
        table = self.regions
        start, end, _, _, _, _, _ = table.arrays()
        total = kernels.total_size(table.n, start, end)
        if self.attrs.min_nr_regions:
            total //= self.attrs.min_nr_regions
        return max(total, self.min_region)

    # ------------------------------------------------------------------------- sampling
    def _memory_generation(self) -> int:
        """What the sampling index depends on: residency for vaddr, frames too for paddr."""
        if self.operations == "paddr":
            return self.memory.placement_generation
        return self.memory.residency_generation

    def _current_sampling_index(self) -> kernels.SamplingIndex:
        """The sampling index, refreshed first where it is stale."""
        if self._index_is_stale():
            self._refresh_probabilities()
        assert self._sampling_index is not None  # built by the first refresh (dirty at start)
        return self._sampling_index

    def _index_is_stale(self) -> bool:
        return self._probabilities_dirty or self._indexed_generation != self._memory_generation()

    def _refresh_probabilities(self) -> None:
        """Per-target page index and prefix sums of P(accessed in one sample interval)."""
        sample_seconds = max(self.attrs.sample_us, 1) * 1e-6
        generation = self._memory_generation()
        if generation != self._indexed_generation or self._sampling_index is None:
            addresses = [
                self._frame_addresses()
                if self.operations == "paddr"
                else self.memory.app_page_vaddr(target.pid)
                for target in self.config.targets
            ]
            empty = [np.zeros(len(a)) for a in addresses]
            self._sampling_index = kernels.sampling_index(addresses, empty, self.min_region)
        cumulative = self._sampling_index.cumulative_p
        offset = 0
        for target in self.config.targets:
            if self.operations == "paddr":
                values = {app: rates * self._resident(app) for app, rates in self._rates.items()}
                n_frames = int(np.sum(self.memory.capacity_pages))
                rates = self.memory.frame_values(values) if values else np.zeros(n_frames)
                nodes = np.zeros(n_frames, dtype=np.int16)  # residency is in the values
            else:
                nodes = self.memory.node_of_page(target.pid)
                known = self._rates.get(target.pid)
                rates = np.zeros(len(nodes)) if known is None else known
            kernels.accumulate_probabilities(
                np.ascontiguousarray(rates, dtype=np.float64),
                np.ascontiguousarray(nodes),
                sample_seconds,
                cumulative[offset : offset + len(rates) + 1],
            )
            offset += len(rates) + 1
        self._probabilities_dirty = False
        self._indexed_generation = generation

    def _resident(self, app: int) -> np.ndarray:
        return (self.memory.node_of_page(app) >= 0).astype(np.float64)

    def _frame_addresses(self) -> np.ndarray:
        first, _ = self.memory.node_phys_range(0)
        n_frames = int(np.sum(self.memory.capacity_pages))
        return first + np.arange(n_frames, dtype=np.int64) * self.memory.page_size

    def _sample(self, samples: int) -> None:
        sampling_index = self._current_sampling_index()
        table = self.regions
        start, end, target, nr, bp, last, _ = table.arrays()
        self._max_nr_accesses_seen = kernels.sample_segment(
            table.n,
            start,
            end,
            target,
            nr,
            bp,
            last,
            *sampling_index,
            self.min_region,
            samples,
            self.attrs.max_nr_accesses,
            self._rng,
        )
        self.passed += samples

    # --------------------------------------------------------------------- aggregation
    def _after_samples(self) -> None:
        """The rest of one ``kdamond_fn`` iteration after ``check_accesses``."""
        next_aggregation_sis = self.next_aggregation_sis
        next_ops_update_sis = self.next_ops_update_sis
        aggregation = self.passed >= next_aggregation_sis
        if aggregation:
            self._merge(self._max_nr_accesses_seen // 10)
        if self.schemes:
            self._apply_schemes()
        if aggregation:
            goal = self.attrs.intervals_goal
            if goal.aggrs and self.passed >= self.next_intervals_tune_sis:
                self.next_aggregation_sis = next_aggregation_sis
                self.next_intervals_tune_sis += self.attrs.aggr_samples * goal.aggrs
                self._tune_intervals()
            sample = max(self.attrs.sample_us, 1)
            self.next_aggregation_sis = next_aggregation_sis + self.attrs.aggr_us // sample
            table = self.regions
            self._keep_aggregated()
            _, _, _, nr, bp, last, _ = table.arrays()
            kernels.reset_aggregated(table.n, nr, bp, last)
            self._split()
        if self.passed >= next_ops_update_sis:
            sample = max(self.attrs.sample_us, 1)
            self.next_ops_update_sis = next_ops_update_sis + self.attrs.update_us // sample
            if self.operations == "vaddr":
                self._vaddr_update()
            self.sz_limit = self._region_sz_limit()

    def _keep_aggregated(self) -> None:
        table = self.regions
        self._aggregated = {name: table.column(name).copy() for name in AGGREGATED_FIELDS}

    def _merge(self, threshold: int) -> None:
        table = self.regions
        max_threshold = self.attrs.aggr_us // max(self.attrs.sample_us, 1)
        table.n = kernels.merge_regions(
            table.n,
            *table.arrays(),
            threshold,
            self.sz_limit,
            self.attrs.max_nr_regions,
            max_threshold,
        )

    def _split(self) -> None:
        """``kdamond_split_regions``."""
        table = self.regions
        nr_regions = table.n
        nr_subs = kernels.split_pieces(nr_regions, self._last_nr_regions, self.attrs.max_nr_regions)
        if not nr_subs:
            return
        table.reserve(nr_regions * nr_subs)
        written = kernels.split_regions(
            nr_regions, *table.arrays(), *table.spare_arrays(), nr_subs, self.min_region, self._rng
        )
        table.swap_spare(written)
        self._last_nr_regions = nr_regions

    def _vaddr_update(self) -> None:
        """vaddr ``ops.update`` (``damon_va_update``): fit every target's regions to its
        current three regions (``damon_set_regions``), even where the user gave the initial
        regions. Regions already tile unchanged ranges exactly, so that case is a no-op."""
        ranges_now = [self._three_regions(target.pid) for target in self.config.targets]
        if ranges_now == self._fitted_ranges:
            return
        self._fitted_ranges = ranges_now
        table = self.regions
        records = table.records()
        updated: list[dict[str, int]] = []
        for index, ranges in enumerate(ranges_now):
            mine = [r for r in records if r["target"] == index]
            updated.extend(_set_regions(mine, ranges, index, self.min_region))
        table.replace(
            [r["start"] for r in updated], [r["end"] for r in updated], [0] * len(updated)
        )
        for name in ("target", "nr", "bp", "last", "age"):
            table.column(name)[:] = [r[name] for r in updated]
        self._probabilities_dirty = True

    def _tune_intervals(self) -> None:
        """``kdamond_tune_intervals`` (intervals_goal auto-tuning)."""
        attrs = self.attrs
        goal = attrs.intervals_goal
        table = self.regions
        sizes = (table.end - table.start).astype(object)
        access_events = int(np.sum(sizes * table.nr_accesses.astype(object)))
        max_events = int(np.sum(sizes)) * attrs.aggr_samples
        target_events = max_events * goal.access_bp // 10000 or 1
        score_bp = access_events * 10000 // target_events
        adaptation_bp = feed_loop_next_input(100_000_000, score_bp) // 10000
        if adaptation_bp <= 10000:
            adaptation_bp = 5000 + adaptation_bp // 2
        if adaptation_bp == 10000:
            return
        sample = min(goal.max_sample_us, attrs.sample_us * adaptation_bp // 10000)
        sample = max(goal.min_sample_us, sample, 1)  # a 0 us interval would stop the clock
        new_attrs = dataclasses.replace(
            attrs, sample_us=sample, aggr_us=sample * attrs.aggr_samples
        )
        self._set_attrs(new_attrs)

    def _set_attrs(self, new: MonitoringAttrs) -> None:
        """``damon_set_attrs``: rescale monitoring results to the new intervals and restart
        the aggregation, update and apply countdowns from now."""
        old = self.attrs
        aggregating = self.passed < self.next_aggregation_sis
        sample = max(new.sample_us, 1)
        self.next_aggregation_sis = self.passed + new.aggr_us // sample
        self.next_ops_update_sis = self.passed + new.update_us // sample
        if old.sample_us and old.aggr_us and new.sample_us and new.aggr_us:
            table = self.regions
            old_max, new_max = old.max_nr_accesses, new.max_nr_accesses
            if max(old_max, new_max, old.aggr_us, new.aggr_us) < 2**31:  # one compiled call
                _, _, _, nr, bp, last, age = table.arrays()
                kernels.rescale_regions(
                    table.n, nr, bp, last, age, old_max, new_max, old.aggr_us, new.aggr_us,
                    aggregating,
                )  # fmt: skip
            elif aggregating:
                table.last_nr_accesses[:] = (
                    table.last_nr_accesses * 10000 // old_max * new_max // 10000
                )
                table.nr_accesses_bp[:] = table.last_nr_accesses * 10000
                table.nr_accesses[:] = 0
            else:
                table.nr_accesses[:] = table.nr_accesses * 10000 // old_max * new_max // 10000
                table.nr_accesses_bp[:] = table.nr_accesses * 10000
            table.age[:] = table.age * old.aggr_us // new.aggr_us
        if new.sample_us != old.sample_us:
            self._probabilities_dirty = True
        self.attrs = new
        for runtime in self.schemes:
            runtime.next_apply_sis = self.passed + self._apply_interval(runtime) // sample

    # ---------------------------------------------------------------------- watermarks
    def _wait_activation(self) -> float:
        """``kdamond_wait_activation``: 0 if monitoring goes on, else microseconds to sleep."""
        if not self.schemes:
            return 0.0
        waits = [self._watermark_wait_us(runtime) for runtime in self.schemes]
        return float(min(waits))

    def _watermark_wait_us(self, runtime: SchemeRuntime) -> int:
        """``damos_wmark_wait_us`` with the free_mem_rate metric in per-mille of all memory."""
        marks = runtime.config.watermarks
        if marks.metric != "free_mem_rate":
            return 0
        total = int(np.sum(self.memory.capacity_pages))
        metric = int(np.sum(self.memory.free_pages)) * 1000 // max(total, 1)
        if metric > marks.high or marks.low > metric:
            runtime.activated = False
            return marks.interval_us
        if marks.high >= metric >= marks.mid and not runtime.activated:
            return marks.interval_us
        runtime.activated = True
        return 0

    # ---------------------------------------------------------------------------- DAMOS
    def _goal_score(self, runtime: SchemeRuntime) -> int | None:
        """``damos_quota_score``: the highest current/target ratio (bp) of the active goals."""
        goals = [(k, g) for k, g in enumerate(runtime.config.quotas.goals) if g.target_value]
        if not goals:
            return None
        highest = 0
        for k, goal in goals:
            if goal.target_metric in ("node_mem_used_bp", "node_mem_free_bp"):
                total = int(self.memory.capacity_pages[goal.nid])
                free = int(self.memory.free_pages[goal.nid])
                numerator = total - free if goal.target_metric == "node_mem_used_bp" else free
                value = numerator * 10000 // total if total else 0
                runtime.quota.goal_values[k] = value
            else:
                value = runtime.quota.goal_values[k]
            highest = max(highest, value * 10000 // goal.target_value)
        return highest

    def _adjust_quota(
        self,
        runtime: SchemeRuntime,
        matching: np.ndarray,
        sizes: np.ndarray,
        rolled: bool = False,
    ) -> np.ndarray | None:
        """``damos_adjust_quota``: roll the charge window (unless ``rolled`` says that was
        done), then set min_score (``matching``: the regions the access pattern accepts;
        ``sizes``: every region's). Returns the regions' scores when it computed them (only
        schemes with a quota need them)."""
        quota = runtime.quota
        if not _limited(runtime.config.quotas):
            return None
        if not rolled:
            self._roll_quota_window(runtime)
        scores = self._scores(runtime)
        quota.min_score = min_score_for(scores[matching], sizes[matching], quota.esz)
        return scores

    def _roll_quota_window(self, runtime: SchemeRuntime) -> None:
        """The first half of ``damos_adjust_quota``: when the charge window has passed, count
        an exceeded quota, start a new window and set its effective size."""
        quotas = runtime.config.quotas
        quota = runtime.quota
        if self.now_us >= quota.charged_from_us + quotas.reset_interval_ms * 1000:
            if quota.esz and quota.charged_sz >= quota.esz:
                runtime.stats.qt_exceeds += 1
            quota.total_charged_sz += quota.charged_sz
            quota.charged_from_us = self.now_us
            quota.charged_sz = 0
            quota.esz = effective_quota(quota, quotas.ms, quotas.bytes, self._goal_score(runtime))

    def _quota_pass_compiles(self, runtime: SchemeRuntime) -> bool:
        """Whether ``kernels.quota_pass`` runs this scheme's pass: a quota, no filters, and
        numbers that int64 holds with room to spare."""
        if not (self.simple_pass_enabled and self.quota_pass_enabled):
            return False
        quota = runtime.quota
        return (
            self._quota_kind(runtime)[0]
            and quota.charged_sz < QUOTA_COMPILED_LIMIT
            and quota.total_charged_sz < QUOTA_COMPILED_LIMIT
            and self.attrs.aggr_us < 2**32
        )

    def _quota_pass_inlines(self, runtime: SchemeRuntime) -> bool:
        """Whether the compiled aggregation loop may run the scheme's quota pass itself: a
        compiled quota pass whose quota is a size only (its effective size is that size
        after every roll of the charge window, which the loop does)."""
        return (
            self._quota_kind(runtime)[1]
            and self._quota_pass_compiles(runtime)
            and runtime.quota.esz < QUOTA_COMPILED_LIMIT
        )

    @staticmethod
    def _quota_kind(runtime: SchemeRuntime) -> tuple[bool, bool]:
        """What the scheme's configuration allows (cached with it): a compiled quota pass (a
        quota, no filters), and one inside the compiled loop (a size-only quota)."""
        cached = runtime.quota_kind_cache
        if cached is None or cached[0] is not runtime.config:
            quotas = runtime.config.quotas
            compiles = not runtime.config.filters and _limited(quotas)
            inlines = (
                compiles
                and not quotas.ms
                and not any(g.target_value for g in quotas.goals)
                and quotas.bytes < QUOTA_COMPILED_LIMIT
                and quotas.reset_interval_ms * 1000 < QUOTA_COMPILED_LIMIT
            )
            cached = (runtime.config, compiles, inlines)
            runtime.quota_kind_cache = cached
        return cached[1], cached[2]

    def _quota_params(self, runtime: SchemeRuntime, roll: bool) -> kernels.QuotaParams:
        scheme = runtime.config
        key = (scheme, self.attrs, roll)
        cached = runtime.quota_params_cache
        if cached is None or cached[0] != key:
            quotas = scheme.quotas
            if scheme.action not in MIGRATE_ACTIONS:
                score = kernels.SCORE_FIXED
            elif scheme.action == "migrate_hot":
                score = kernels.SCORE_HOT
            else:
                score = kernels.SCORE_COLD
            params = kernels.QuotaParams(
                enabled=True,
                roll=roll,
                sz=min(quotas.bytes, QUOTA_COMPILED_LIMIT),
                reset_us=min(quotas.reset_interval_ms * 1000, QUOTA_COMPILED_LIMIT),
                score=score,
                max_nr_accesses=self.attrs.max_nr_accesses,
                aggr_us=self.attrs.aggr_us,
                nr_permil=quotas.nr_accesses_permil,
                age_permil=quotas.age_permil,
                min_region=self.min_region,
                sample_us=max(self.attrs.sample_us, 1),
                now_us=0.0,
            )
            cached = (key, params)
            runtime.quota_params_cache = cached
        return cached[1]._replace(now_us=float(self.now_us))

    @staticmethod
    def _quota_state(runtime: SchemeRuntime) -> kernels.QuotaState:
        """The scheme's quota state for ``kernels.quota_pass`` (its esz capped at the
        compiled limit, which no sum of region sizes reaches)."""
        quota = runtime.quota
        values = [0] * kernels.QUOTA_VALUES
        values[kernels.ESZ] = min(quota.esz, QUOTA_COMPILED_LIMIT)
        values[kernels.CHARGED_SZ] = quota.charged_sz
        values[kernels.MIN_SCORE] = quota.min_score
        values[kernels.CHARGE_TARGET_FROM] = quota.charge_target_from
        values[kernels.CHARGE_ADDR_FROM] = quota.charge_addr_from
        values[kernels.TOTAL_CHARGED_SZ] = quota.total_charged_sz
        return kernels.QuotaState(
            np.array(values, dtype=np.int64), np.array([quota.charged_from_us])
        )

    @staticmethod
    def _take_quota_state(runtime: SchemeRuntime, state: kernels.QuotaState, roll: bool) -> None:
        """Carry a compiled pass's quota state back (after ``_book_compiled_pass``, whose
        charge it replaces: the kernel's is the one that saw window rolls)."""
        quota = runtime.quota
        values = state.values.tolist()
        quota.charged_sz = values[kernels.CHARGED_SZ]
        quota.min_score = values[kernels.MIN_SCORE]
        quota.charge_target_from = values[kernels.CHARGE_TARGET_FROM]
        quota.charge_addr_from = values[kernels.CHARGE_ADDR_FROM]
        if roll:
            quota.esz = values[kernels.ESZ]
            quota.total_charged_sz = values[kernels.TOTAL_CHARGED_SZ]
            quota.charged_from_us = float(state.charged_from_us[0])
            runtime.stats.qt_exceeds += values[kernels.QT_EXCEEDS]

    def _apply_compiled_quota_pass(self, runtime: SchemeRuntime) -> None:
        """``kdamond_apply_schemes`` for a pass that ``_quota_pass_compiles`` accepted, its
        charge window already rolled."""
        table = self.regions
        table.reserve(table.n + 2)
        results = self._pass_results(table.n + 2)
        state = self._quota_state(runtime)
        table.n, tried_n = kernels.quota_pass(
            table.n,
            kernels.Regions(*table.arrays()),
            self._pass_params(runtime),
            self._quota_params(runtime, roll=False),
            state,
            results,
            float(self.now_us),
        )
        self._book_compiled_pass(runtime, results, tried_n)
        self._take_quota_state(runtime, state, roll=False)
        self._advance_apply_countdowns()

    def _scores(self, runtime: SchemeRuntime) -> np.ndarray:
        """The ops' ``get_scheme_score``: hot for migrate_hot, cold for migrate_cold, else 99."""
        quotas = runtime.config.quotas
        action = runtime.config.action
        table = self.regions
        if action not in MIGRATE_ACTIONS:
            return np.full(table.n, 99, dtype=np.int64)
        if not quotas.nr_accesses_permil and not quotas.age_permil:
            return np.full(table.n, 0 if action == "migrate_hot" else 99, dtype=np.int64)
        hot = hot_scores(
            table.nr_accesses,
            table.age,
            self.attrs.max_nr_accesses,
            self.attrs.aggr_us,
            quotas.nr_accesses_permil,
            quotas.age_permil,
        )
        return hot if action == "migrate_hot" else 99 - hot

    def _pattern_without_size(self, runtime: SchemeRuntime) -> np.ndarray:
        pattern = runtime.config.access_pattern
        table = self.regions
        nr = table.nr_accesses_bp // 10000
        age = table.age
        return (
            (pattern.nr_accesses.min <= nr)
            & (nr <= pattern.nr_accesses.max)
            & (pattern.age.min <= age)
            & (age <= pattern.age.max)
        )

    def _apply_schemes(self) -> None:
        """``kdamond_apply_schemes``: every due, active scheme over every region in order.

        A lone simple scheme (``_pass_is_simple``) runs compiled (``kernels.simple_pass``);
        otherwise the pass goes region by region, as the kernel's does (``_apply_to_region``),
        which is the reference the compiled pass is tested against."""
        due = [s for s in self.schemes if self.passed >= s.next_apply_sis and s.activated]
        if not due:
            return
        if self.simple_pass_enabled and len(due) == 1 and self._pass_is_simple(due[0]):
            self._apply_compiled_pass(due[0])
            return
        rolled = False
        if len(due) == 1 and self._quota_pass_compiles(due[0]):
            self._roll_quota_window(due[0])
            rolled = True
            if due[0].quota.esz < QUOTA_COMPILED_LIMIT:
                self._apply_compiled_quota_pass(due[0])
                return
        table = self.regions
        sizes = table.end - table.start
        interesting = np.zeros(table.n, dtype=bool)
        for runtime in due:
            runtime.tried_columns = ()
            runtime.tried_rows = []
            interesting |= self._candidates(runtime, sizes, rolled)
        inserted = 0
        for original in np.flatnonzero(interesting):
            if all(r.quota.exhausted for r in due):
                break
            index = int(original) + inserted
            before = table.n
            self._apply_to_region(index, due)
            inserted += table.n - before
        self._advance_apply_countdowns()

    def _candidates(
        self, runtime: SchemeRuntime, sizes: np.ndarray, rolled: bool = False
    ) -> np.ndarray:
        """Adjust the scheme's quota (``damos_adjust_quota``) and return the regions its pass
        may act on: those matching its access pattern (the size aside: a region cut by a
        filter or the quota may match later), above its score cut, and not skipped as
        charged in the last window."""
        pattern = runtime.config.access_pattern
        loose = self._pattern_without_size(runtime)
        matching = loose & (pattern.sz.min <= sizes) & (sizes <= pattern.sz.max)
        scores = self._adjust_quota(runtime, matching, sizes, rolled)
        quota = runtime.quota
        if quota.esz:
            if scores is None:  # a stale esz of a scheme whose quota was lifted by commit
                scores = self._scores(runtime)
            loose = loose & (scores >= quota.min_score)
        if quota.charge_target_from >= 0:
            # regions before this one are skipped as charged in the last window
            resolution = self._charge_resolution_index(quota)
            loose[:resolution] = False
            # the kernel clears the charge state at this region, or (when it is a single
            # minimum region starting inside the charged range) at the next one
            following = min(resolution + 2, len(loose))
            loose[resolution:following] = True
        return loose

    def _advance_apply_countdowns(self) -> None:
        """The end of ``kdamond_apply_schemes``: every scheme whose time came, deactivated or
        not, waits a full apply interval again."""
        sample = max(self.attrs.sample_us, 1)
        for runtime in self.schemes:
            if self.passed >= runtime.next_apply_sis:
                runtime.next_apply_sis = self.passed + self._apply_interval(runtime) // sample

    def _pass_is_simple(self, runtime: SchemeRuntime) -> bool:
        """One scheme, no quota (so no score cut, splits or charge skipping) and no filters:
        every matching region gets the action in address order, which one compiled call
        does."""
        quotas = runtime.config.quotas
        limited = quotas.ms or quotas.bytes or any(g.target_value for g in quotas.goals)
        return not limited and not runtime.quota.esz and not runtime.config.filters

    def _apply_compiled_pass(self, runtime: SchemeRuntime) -> None:
        """``kdamond_apply_schemes`` for a pass that ``_pass_is_simple`` accepted."""
        table = self.regions
        results = self._pass_results(max(table.n, 1))
        live = kernels.Regions(*table.arrays())
        tried_n = kernels.simple_pass(table.n, live, self._pass_params(runtime), results)
        self._book_compiled_pass(runtime, results, tried_n)
        self._advance_apply_countdowns()

    def _account(
        self,
        runtime: SchemeRuntime,
        nr_tried: int,
        sz_tried: int,
        nr_applied: int,
        moved_pages: int,
        walked_pages: int,
        sz_filter_passed: int,
    ) -> None:
        """Book what applying the scheme did (sums as ``kernels.PassTotals``), however it
        was applied: the quota's charge (the bytes tried, and the time: the page-table walk
        plus the migrations) and the scheme's stats. (Plain numbers: the region-by-region
        pass calls this for every region.)"""
        quota = runtime.quota
        quota.charged_sz += sz_tried
        quota.total_charged_ns += (
            walked_pages * WALK_NS_PER_PAGE + moved_pages * self._migration_ns_per_page
        )
        stats = runtime.stats
        stats.nr_tried += nr_tried
        stats.sz_tried += sz_tried
        stats.nr_applied += nr_applied
        stats.sz_applied += moved_pages * self.memory.page_size
        stats.sz_ops_filter_passed += sz_filter_passed

    def _charge_resolution_index(self, quota: QuotaState) -> int:
        """The region at which ``damos_skip_charged_region`` stops skipping: the first of the
        charged target ending past charge_addr_from, or that target's last region."""
        table = self.regions
        in_target = np.flatnonzero(table.target == quota.charge_target_from)
        if len(in_target) == 0:
            return 0
        past = in_target[table.end[in_target] > quota.charge_addr_from]
        return int(past[0]) if len(past) and quota.charge_addr_from else int(in_target[-1])

    def _apply_to_region(self, index: int, due: list[SchemeRuntime]) -> None:
        """``damon_do_apply_schemes`` for one region (``index`` may move to a split-off part)."""
        for runtime in due:
            quota = runtime.quota
            if quota.exhausted:
                continue
            skip, index = self._skip_charged_region(index, runtime)
            if skip:
                continue
            if not self._valid_target(index, runtime):
                continue
            self._apply_scheme(index, runtime)

    def _skip_charged_region(self, index: int, runtime: SchemeRuntime) -> tuple[bool, int]:
        quota = runtime.quota
        if quota.charge_target_from < 0:
            return False, index
        table = self.regions
        target = int(table.target[index])
        if target != quota.charge_target_from:
            return True, index
        is_last = index + 1 >= table.n or int(table.target[index + 1]) != target
        if is_last:
            quota.charge_target_from = -1
            quota.charge_addr_from = 0
            return True, index
        start, end = int(table.start[index]), int(table.end[index])
        if quota.charge_addr_from and end <= quota.charge_addr_from:
            return True, index
        if quota.charge_addr_from and start < quota.charge_addr_from:
            skip_size = (quota.charge_addr_from - start) // self.min_region * self.min_region
            if not skip_size:
                if end - start <= self.min_region:
                    return True, index
                skip_size = self.min_region
            table.split_at(index, skip_size)
            index += 1
        quota.charge_target_from = -1
        quota.charge_addr_from = 0
        return False, index

    def _valid_target(self, index: int, runtime: SchemeRuntime) -> bool:
        """``damos_valid_target``: the access pattern, then the score cut under a quota."""
        table = self.regions
        pattern = runtime.config.access_pattern
        size = int(table.end[index] - table.start[index])
        nr = int(table.nr_accesses_bp[index]) // 10000
        age = int(table.age[index])
        if not (
            pattern.sz.min <= size <= pattern.sz.max
            and pattern.nr_accesses.min <= nr <= pattern.nr_accesses.max
            and pattern.age.min <= age <= pattern.age.max
        ):
            return False
        if not runtime.quota.esz:
            return True
        score = self._region_score(index, runtime)
        return score >= runtime.quota.min_score

    def _region_score(self, index: int, runtime: SchemeRuntime) -> int:
        table = self.regions
        quotas = runtime.config.quotas
        if runtime.config.action not in MIGRATE_ACTIONS:
            return 99
        hot = hot_score(
            int(table.nr_accesses[index]),
            int(table.age[index]),
            self.attrs.max_nr_accesses,
            self.attrs.aggr_us,
            quotas.nr_accesses_permil,
            quotas.age_permil,
        )
        return hot if runtime.config.action == "migrate_hot" else 99 - hot

    def _apply_scheme(self, index: int, runtime: SchemeRuntime) -> None:
        """``damos_apply_scheme``: quota cut, core filters, the action, charge, age, stats."""
        table = self.regions
        quota = runtime.quota
        size = int(table.end[index] - table.start[index])
        if quota.esz and quota.charged_sz + size > quota.esz:
            size = (quota.esz - quota.charged_sz) // self.min_region * self.min_region
            if not size:
                self._account(runtime, 1, 0, 0, 0, 0, 0)  # tried; nothing charged
                return
            table.split_at(index, size)
        if self._filtered_out(index, runtime):
            return
        target = int(table.target[index])
        start, end = int(table.start[index]), int(table.end[index])
        nr_seen = int(table.nr_accesses_bp[index]) // 10000
        age_seen = int(table.age[index])
        moved, walked, filter_passed = self._ops_apply(target, start, end, runtime)
        self._account(runtime, 1, size, 1 if moved else 0, moved, walked, filter_passed)
        if quota.esz and quota.charged_sz >= quota.esz:
            quota.charge_target_from = target
            quota.charge_addr_from = end + 1
        if runtime.config.action != "stat":
            table.age[index] = 0
        runtime.tried_rows.append((target, start, end, nr_seen, age_seen, filter_passed))

    def _filtered_out(self, index: int, runtime: SchemeRuntime) -> bool:
        """``damos_filter_out`` over the core filters (addr, target); the first match decides."""
        filters = runtime.config.filters
        if not filters:
            return False
        table = self.regions
        for damos_filter in filters:
            if damos_filter.type == "target":
                matched = int(table.target[index]) == damos_filter.target_idx
            else:
                low = damos_filter.addr_start // self.min_region * self.min_region
                high = damos_filter.addr_end // self.min_region * self.min_region
                start, end = int(table.start[index]), int(table.end[index])
                if low <= start and end <= high:
                    matched = True
                elif end <= low or high <= start:
                    matched = False
                elif start < low:
                    table.split_at(index, low - start)
                    matched = False
                else:
                    table.split_at(index, high - start)
                    matched = True
            if matched == damos_filter.matching:
                return not damos_filter.allow
        return bool(filters[-1].allow)  # nothing matched: the opposite of the last filter

    def _ops_apply(
        self, target: int, start: int, end: int, runtime: SchemeRuntime
    ) -> tuple[int, int, int]:
        """The ops layer's ``apply_scheme``: returns (pages moved, pages walked, bytes that
        passed ops filters)."""
        scheme = runtime.config
        memory = self.memory
        if scheme.action == "stat":
            return 0, 0, 0
        app = self.config.targets[target].pid
        if self.operations == "paddr":
            filter_passed = self._resident_frames_in(start, end) * memory.page_size
            result = memory.migrate_phys_range_to_node(start, end, scheme.target_nid)
        else:
            nodes, weights = self._dests(runtime)
            _, result = memory.migrate_vaddr_ranges(
                app, np.array([start]), np.array([end]), nodes, weights
            )
            filter_passed = 0  # vaddr migrate does not count it (6.17/6.18)
        self.migrated_pages += result.moved_matrix
        # the action walks the page table over the whole region, then migrates what it must
        walked = (end - start) // memory.page_size
        return int(result.moved_pages), walked, filter_passed

    def _dests(self, runtime: SchemeRuntime) -> tuple[np.ndarray, np.ndarray]:
        """(nodes, weights) of the scheme's migrations: its dests, interleaved by weight, or
        target_nid alone (paddr ignores dests); looked up once per configuration."""
        cached = runtime.dests_cache
        if cached is None or cached[0] is not runtime.config:
            scheme = runtime.config
            dests = () if self.operations == "paddr" else scheme.dests
            cached = (scheme, self._dest_arrays(dests, scheme.target_nid))
            runtime.dests_cache = cached
        return cached[1]

    def _dest_arrays(self, dests: tuple, target_nid: int) -> tuple[np.ndarray, np.ndarray]:
        """(nodes, weights) of a scheme's dests; no dests: target_nid with weight 1."""
        key = (dests, target_nid)
        cached = self._dests_cache.get(key)
        if cached is None:
            if dests:
                nodes = [d.id for d in dests]
                weights = [d.weight for d in dests]
            else:
                nodes, weights = [target_nid], [1]
            cached = (np.array(nodes, dtype=np.int64), np.array(weights, dtype=np.int64))
            self._dests_cache[key] = cached
        return cached

    def _resident_frames_in(self, start: int, end: int) -> int:
        first, _ = self.memory.node_phys_range(0)
        lo = (start - first) // self.memory.page_size
        hi = -((first - end) // self.memory.page_size)  # frames overlapping [start, end)
        return int(np.count_nonzero(self.memory.frame_app[max(lo, 0) : max(hi, 0)] >= 0))


def _copied_columns(columns: tuple[np.ndarray, ...], n: int) -> tuple[np.ndarray, ...]:
    """Copies of the first ``n`` entries of equally long int64 columns: one copy when they
    are the rows of one block (as ``PassResults.zeros`` and the snapshot buffer make them;
    a deep copy separates them), else one per column."""
    block = columns[0].base
    if (
        isinstance(block, np.ndarray)
        and block.shape == (len(columns), len(columns[0]))
        and columns[-1].base is block  # the rows, in order, as built
    ):
        return tuple(block[:, :n].copy())
    return tuple(column[:n].copy() for column in columns)


def _limited(quotas: Quotas) -> bool:
    """Whether a scheme's quota limits it (``damos_adjust_quota`` computes an effective
    size): a time or size quota, or a goal with a target."""
    return bool(quotas.ms or quotas.bytes or any(g.target_value for g in quotas.goals))


def _set_regions(
    regions: list[dict[str, int]], ranges: list[tuple[int, int]], target: int, min_region: int
) -> list[dict[str, int]]:
    """``damon_set_regions``: drop regions outside every range, stretch the first and last
    region meeting each range to its (aligned) bounds, fill holes, add regions for empty ranges."""

    def meets(region: Mapping[str, int], low: int, high: int) -> bool:
        return region["start"] < high and low < region["end"]

    kept = [r for r in regions if any(meets(r, low, high) for low, high in ranges)]
    result: list[dict[str, int]] = []
    for low, high in sorted(ranges):
        low_aligned = low // min_region * min_region
        high_aligned = -(-high // min_region) * min_region
        inside = [dict(r) for r in kept if meets(r, low, high)]
        if not inside:
            result.append(_new_region(low_aligned, high_aligned, target))
            continue
        inside[0]["start"] = low_aligned
        inside[-1]["end"] = high_aligned
        filled = [inside[0]]
        for region in inside[1:]:
            if region["start"] > filled[-1]["end"]:
                filled.append(_new_region(filled[-1]["end"], region["start"], target))
            filled.append(region)
        result.extend(filled)
    return result


def _new_region(start: int, end: int, target: int) -> dict[str, int]:
    return {"start": start, "end": end, "target": target, "nr": 0, "bp": 0, "last": 0, "age": 0}
