"""How each shipped node profile is made: from measurements, or from published numbers.

Four profiles are fitted to the measurement files in ``../shared/data`` with the same code as
``tierenv calibrate``, and two remote views (``remote_view.REMOTE_VIEW_RECIPES``) with the same
code as ``tierenv calibrate --kind remote-ddr|remote-cxl``; two are fitted to numbers published
in the sources named in each entry (see also docs/references.md); eight more
mirror the hardware of published interleaving results, each an existing profile scaled to the
published numbers (what was scaled by what, and what was assumed, is in each profile's
provenance). ``python -m experiments.build_profiles`` writes them into the package; ``tierenv
report`` rebuilds them into ``results/`` and checks they match what ships.

Remote views (memory measured from the other socket's cores, ``-c191``; MLC -W0 and -W2 only):

- ``bytedance-ddr5-remote-view``: the ByteDance DDR5 SNC domain over UPI
  (``ddr5_log_d7_c16_w{0,2}_r0``). Read-only idle 119.4 ns, no write-share idle term, early
  rise 73.2 ns. Fit: median / max latency error 0.87 % / 3.1 % (-W0), 0.48 % / 7.8 % (-W2).
- ``bytedance-cxl-remote-view``: the ByteDance ASIC CXL expander behind UPI
  (``cxl_log_d3_c16_w{0,2}_r0``). Read-only idle 482.7 ns, +295.5 ns per unit write share, early
  rise 40.9 ns. Fit: 0.25 % / 2.3 % (-W0), 0.15 % / 3.4 % (-W2).

Leaving one mix out fails: fitted to one mix, neither view predicts the other.
DDR capacity is off by -34 % (-W0 held out) and +53 % (-W2), with latency medians of 5.3 % and
3.6 % and maxima of 71 % and 50 %. CXL capacity is within 2 %, but the write-share idle term
cannot be told from one mix: medians 21 % and 17 %. So both profiles interpolate between the
two measured mixes (read fractions 0.75-1) and predict nothing outside them
(``python -m tierenv.hardware.remote_view --out DIR`` prints these figures).

Profiles that mirror published setups (node; made from):

- ``meta-like-cxl``: the CXL of Meta's N:M interleave patch (LKML, June 2022); half of
  ``bytedance-ddr5-snc`` at every mix, its idle + 80 ns, the ``bytedance-cxl-asic`` curve.
- ``xeon6-ddr5-6400-12ch``: a Xeon 6 socket, DDR5-6400 x12 (Micron/Intel, arXiv 2412.12491);
  ``spr-8460y-ddr5-socket`` x 12/8 channels x 6400/4800 MT/s.
- ``micron-cz122-x8``: one Micron CZ122 x8 CXL module of the same paper; ``generic-cxl-x8``
  unchanged (the references hold no CZ122 figure).
- ``micron-cz122-x8-8dev``: eight of them interleaved by the platform as one node; x8 bandwidth.
- ``amd-ddr5-72gbs`` and ``cxl-26gbs``: the DAMOS-interleave v4 test machine (LKML, July 2025);
  ``bytedance-ddr5-snc`` and ``bytedance-cxl-asic`` scaled to 72 and 26 GB/s reads only.
- ``icelake-ddr4-socket``: a socket of Colloid's (SOSP'24) Ice Lake, DDR4-3200 x8;
  ``spr-8460y-ddr5-socket`` x 3200/4800, the Mess Cascade Lake DDR4 idle latency.
- ``icelake-ddr4-remote-socket``: the other socket over UPI (Colloid's alternate tier);
  ``bytedance-ddr5-remote-socket`` scaled to a UPI-bound read peak, idle local + 55 ns.

None of these numbers was tuned to reproduce a published interleaving result: the results each
setup is known for (e.g. +24 % read-only and +39 % mixed bandwidth for Xeon 6 + 8 CZ122) are
what scenarios check the model against.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np

from tierenv.files import write_text_atomically
from tierenv.hardware.curves import ParametricCurve
from tierenv.hardware.fit import ProfileFit, fit_profile, fit_saturation, report_curve
from tierenv.hardware.fit_report import fit_table, plot_fit
from tierenv.hardware.measurements import MeasuredCurve, read_measurements
from tierenv.hardware.profile import NodeProfile
from tierenv.hardware.remote_view import REMOTE_VIEW_RECIPES
from tierenv.provenance import stamp

TOLERANCE = 0.05  # median absolute latency error a fit is held to

# Middle of the +50-60 ns local->remote idle gap that MLC latency matrices show
# (docs/references.md#remote-socket).
REMOTE_GAP_NS = 55.0
# Local SNC DDR5 idle (MLC, 20000-delay row of ddr5_log_d0_c8_w0_r0) plus that gap.
REMOTE_IDLE_NS = 96.59 + REMOTE_GAP_NS
# Measured ASIC CXL idle (MLC, 20000-delay row of cxl_log_d0_c16_w0_r0); CXL-DMSim's ASIC
# figure (2.18 x 110.9 ns local DDR5 = 242 ns) agrees within 4 %.
CXL_IDLE_NS = 250.41


# Profiles fitted to measurement files: (folder under data/, file pattern, fit_profile keywords).
MEASURED_RECIPES: list[tuple[str, str, dict]] = [
    (
        "mess",
        "spr-8460y-ddr5_memory_curves.csv",
        {
            "name": "spr-8460y-ddr5-socket",
            "kind": "ddr",
            "description": "Xeon 8460Y+ (Sapphire Rapids) socket, DDR5-4800 x8 channels (Mess)",
            "provenance": {
                "source": "Mess benchmark curves, bsc-mem/Mess-Results MN5-ACC local "
                "(../shared/data/mess/spr-8460y-ddr5_memory_curves.csv), 42 read mixes",
                "method": "p-form fit per mix, DDR write-penalty saturation model",
            },
        },
    ),
    (
        "mlc/bytedance-eurosys24",
        "ddr5_log_d0_*",
        {
            "name": "bytedance-ddr5-snc",
            "kind": "ddr",
            "description": "One 2-channel DDR5-4800 sub-NUMA domain of a 2S SPR (ByteDance, MLC)",
            "provenance": {
                "source": "Intel MLC v3.10 --loaded_latency, Tang et al. EuroSys'24 artefacts "
                "(../shared/data/mlc/bytedance-eurosys24/ddr5_log_d0_c8_w{0,2,5,6}_r0)",
                "method": "p-form fit per mix (-W0/2/5/6), DDR write-penalty saturation model",
            },
        },
    ),
    (
        "mlc/bytedance-eurosys24",
        "cxl_log_d0_*",
        {
            "name": "bytedance-cxl-asic",
            "kind": "cxl",
            "description": "ASIC CXL Type-3 expander on the local socket of a 2S SPR "
            "(ByteDance, MLC)",
            "provenance": {
                "source": "Intel MLC v3.10 --loaded_latency, Tang et al. EuroSys'24 artefacts "
                "(../shared/data/mlc/bytedance-eurosys24/cxl_log_d0_c16_w{0,2,5,6}_r0)",
                "method": "p-form fit per mix, full-duplex link + media saturation model",
            },
        },
    ),
    (
        "mess/cxl-expander-model",
        "bwlat_*.txt",
        {
            "name": "generic-cxl-x8",
            "kind": "cxl",
            "idle_latency_ns": CXL_IDLE_NS,
            "description": "Generic PCIe 5.0 x8 CXL memory expander (Mess-simulator device curves)",
            "provenance": {
                "source": "Mess-simulator CXL expander curves bwlat_{30,58,74,90}.txt "
                "(../shared/data/mess/cxl-expander-model/); vendor x8 modules quote "
                "~36 GB/s at 2:1 (Micron CZ120, Samsung CMM-D, SK hynix CMM-DDR5)",
                "method": "shape and read/write-mix capacity from the device curves; idle "
                f"latency anchored at {CXL_IDLE_NS} ns (measured ASIC expander idle; the "
                "device curves exclude the on-chip path)",
            },
        },
    ),
]


def _measured(folder: Path, pattern: str) -> list[MeasuredCurve]:
    files = sorted(folder.glob(pattern))
    if not files:
        raise FileNotFoundError(f"{folder}: no measurement files match {pattern!r}")
    return [curve for path in files for curve in read_measurements(path)]


def _published_curve(source: str, label: str, read_fraction: float, points) -> MeasuredCurve:
    bandwidth, latency = zip(*points, strict=True)
    return MeasuredCurve(
        source=source,
        label=label,
        read_fraction=read_fraction,
        bandwidth_gbps=np.array(bandwidth, float),
        latency_ns=np.array(latency, float),
    )


def build(shared: Path) -> list[ProfileFit]:
    """Fit every shipped profile; ``shared`` is the folder holding ``data/``."""
    data = shared / "data"
    # Local views first, then the remote views (the same fit with a socket-link term).
    fits = [
        fit_profile(_measured(data / folder, pattern), **recipe)
        for folder, pattern, recipe in [*MEASURED_RECIPES, *REMOTE_VIEW_RECIPES]
    ]
    fits.append(_remote_socket_profile())
    base = {fit.profile.name: fit.profile for fit in fits}
    fits.append(_stream_expander_profile(base["generic-cxl-x8"]))
    # Published setups: existing profiles scaled to published numbers. No latency curve was
    # published for any of them, so there is nothing to report errors on; the report lists
    # each profile's provenance and capacities instead.
    fits.extend(ProfileFit(profile, []) for profile in published_setup_profiles(base))
    return fits


def _remote_socket_profile() -> ProfileFit:
    """ByteDance SNC domain reached from the other socket (numbers from Tang et al.,
    EuroSys'24: docs/references.md#bytedance-remote-ddr)."""
    peak_read = 70.8
    source = (
        "Tang et al., EuroSys 2024, MLC logs data/ddr5/log_d7_c16_* and log_d4_* of "
        "github.com/bytedance/eurosys24-artifacts (log_d7_c16_w{0,2}_r0 in "
        "data/mlc/bytedance-eurosys24/; numbers in docs/references.md#bytedance-remote-ddr)"
    )
    read_curve = _published_curve(
        source,
        "reads, L@0/50/80/95% of peak",
        1.0,
        [
            (0.0, REMOTE_IDLE_NS),
            (0.5 * peak_read, 218.0),
            (0.8 * peak_read, 250.0),
            (0.95 * peak_read, 279.0),
        ],
    )
    # Peaks under mixes: middle of the published ranges (MLC W2, W5 -> 3/4, 2/3 reads). The
    # non-temporal-write-only peak (W6, 34.5-37.6 GB/s) is left out: the write-penalty form
    # cannot also hold it, and such traffic is rare in applications.
    mixes = [(0.75, 43.6), (2 / 3, 39.35)]
    fit = fit_profile(
        [read_curve],
        name="bytedance-ddr5-remote-socket",
        kind="remote-ddr",
        idle_latency_ns=REMOTE_IDLE_NS,
        description="The ByteDance DDR5 SNC domain accessed from the remote socket (over UPI)",
        provenance={
            "source": source,
            "method": "p-form fit to the published L@50/80/95% points of the read curve; "
            "saturation model fitted to the published peaks of reads, W2 and W5 (valid for "
            "read fractions >= 2/3; the NT-write-only peak W6 is not reproduced); "
            f"idle {REMOTE_IDLE_NS:.1f} ns = local MLC idle + 55 ns (MLC matrices)",
        },
    )
    bandwidth = fit_saturation(
        "remote-ddr",
        np.array([1.0, *[r for r, _ in mixes]]),
        np.array([peak_read, *[bw for _, bw in mixes]]),
    )
    # The read curve was measured up to 95 % of the read peak: keep its headroom in load units.
    profile = _with_bandwidth(fit.profile, bandwidth)
    return ProfileFit(profile, [report_curve(profile, read_curve)])


def _stream_expander_profile(x8_device: NodeProfile) -> ProfileFit:
    """The CXL expander behind G. Price's STREAM numbers (weighted interleave v5 cover letter)."""
    # STREAM CXL-only, MB/s -> GB/s. Copy and Scale: 1 read + RFO + write (2/3 reads at the
    # controller); Add and Triad: 2 reads + RFO + write (3/4).
    reads = np.array([r for _, r, _ in STREAM_PEAKS])
    peaks = np.array([bw for _, _, bw in STREAM_PEAKS])
    # Capacity rises with the read share: the device's DRAM media, not its link, binds; fitted
    # with the media write-penalty form.
    bandwidth = fit_saturation("ddr", reads, peaks)
    profile = replace(
        x8_device,
        name="spr-cxl-expander-stream",
        description="CXL expander of the weighted-interleave STREAM runs (SPR, 1 socket)",
        bandwidth=bandwidth,
        provenance={
            "source": "G. Price, '[PATCH v5] mm/mempolicy: weighted interleave' cover letter "
            "(Jan 2024): STREAM CXL-only Copy/Scale/Add/Triad 22.2/22.3/24.4/24.5 GB/s",
            "method": "saturation fitted to the four STREAM results; no latency was published "
            "for this device, so the latency curve and idle latency are those of "
            "generic-cxl-x8 (an x8-class device by its bandwidth)",
        },
    )
    # No latency was published for this device, so there is no curve to report errors on;
    # the section lists the published peaks against the model instead.
    return ProfileFit(profile, [])


STREAM_PEAKS = [
    ("Copy", 2 / 3, 22.210),
    ("Scale", 2 / 3, 22.288),
    ("Add", 0.75, 24.419),
    ("Triad", 0.75, 24.485),
]


# --- Profiles that mirror the hardware of published interleaving results ----------------------
#
# Each is an existing profile (its latency curve in units of load, its capacity's mix
# dependence) scaled to the numbers the source published. The published interleaving gains of
# each setup were not used: they are what scenarios check the model against.

PUBLISHED_SETUPS = (
    "meta-like-cxl",
    "xeon6-ddr5-6400-12ch",
    "micron-cz122-x8",
    "micron-cz122-x8-8dev",
    "amd-ddr5-72gbs",
    "cxl-26gbs",
    "icelake-ddr4-socket",
    "icelake-ddr4-remote-socket",
)

# Meta's N:M interleave patch (Al Maruf, Wang and Weiner, LKML 2022): CXL at ~half the top
# tier's peak, ~80 ns more idle latency, a steeper latency-vs-bandwidth curve.
META_SOURCE = (
    "H. Al Maruf, H. Wang, J. Weiner, 'mm: mempolicy: N:M interleave policy for tiered memory "
    "nodes' (LKML, June 2022): production CXL has ~half the peak bandwidth of the top tier, "
    "~80 ns higher idle latency and a steeper latency-vs-bandwidth curve"
)
META_BANDWIDTH_RATIO = 0.5
META_IDLE_GAP_NS = 80.0

# Micron/Intel, arXiv 2412.12491: a Xeon 6 socket with 12 channels of DDR5-6400 and 8 Micron
# CZ122 x8 CXL modules.
MICRON_INTEL_SOURCE = (
    "Micron/Intel, arXiv 2412.12491: Xeon 6 with 12 channels of DDR5-6400 plus 8 Micron CZ122 "
    "x8 CXL modules"
)
XEON6_CHANNELS, XEON6_MTS = 12, 6400
SPR_CHANNELS, SPR_MTS = 8, 4800  # spr-8460y-ddr5-socket (Mess-Results MN5-ACC)
CZ122_DEVICES = 8

# B. Tabatabai's DAMOS interleave v4 cover letter (LKML, 9 Jul 2025).
TABATABAI_SOURCE = (
    "B. Tabatabai, '[PATCH v4] mm/damon/vaddr: Allow interleaving in migrate_{hot,cold} "
    "actions' cover letter (LKML, 9 Jul 2025): 128-core AMD machine with 72 GB/s local DDR and "
    "26 GB/s CXL (message-id 20250709005952.17776-1-bijan311@gmail.com)"
)
AMD_DDR_GBPS = 72.0
AMD_CXL_GBPS = 26.0

# Colloid's testbed (host-architecture/colloid README): a dual-socket Ice Lake, the remote
# socket's memory as the alternate tier. The sources give no channel count, DIMM speed,
# UPI bandwidth or latency for it; the numbers below say where each comes from instead.
COLLOID_SOURCE = (
    "Vuppalapati and Agarwal, 'Tiered Memory Management: Access Latency is the Key!' (SOSP'24) "
    "and the README of github.com/host-architecture/colloid: dual-socket Ice Lake (3rd-gen "
    "Xeon Scalable), local DDR as the default tier, the other socket's memory as the "
    "alternate tier"
)
ICELAKE_CHANNELS, ICELAKE_MTS = 8, 3200  # Ice Lake-SP platform maximum (assumed populated)
# Mess idle of the Cascade Lake DDR4 socket (Xeon Gold 5218, DDR4-2933 x6; Mess-Results EPEEC4).
ICELAKE_IDLE_NS = 90.0
# Whole-socket remote reads are UPI-bound (docs/references.md#remote-socket). The Skylake-SP
# remote-socket DDR4 curve (Mess simulator, bwlat_98) peaks at 35.2 GB/s; Ice Lake-SP's UPI
# runs at 11.2 GT/s, Skylake-SP's at 10.4 GT/s.
SKYLAKE_REMOTE_READ_GBPS = 35.2
ICELAKE_UPI_GTS, SKYLAKE_UPI_GTS = 11.2, 10.4


def published_setup_profiles(base: dict[str, NodeProfile]) -> list[NodeProfile]:
    """The profiles of :data:`PUBLISHED_SETUPS`, made from the measured and published ones."""
    snc, asic = base["bytedance-ddr5-snc"], base["bytedance-cxl-asic"]
    spr = base["spr-8460y-ddr5-socket"]
    cz122 = _cz122(base["generic-cxl-x8"])
    icelake = _icelake_socket(spr)
    profiles = [
        _meta_like_cxl(snc, asic),
        _xeon6_socket(spr),
        cz122,
        _cz122_devices(cz122),
        _scaled_to_read_peak(snc, AMD_DDR_GBPS, "amd-ddr5-72gbs", "DDR"),
        _scaled_to_read_peak(asic, AMD_CXL_GBPS, "cxl-26gbs", "CXL"),
        icelake,
        _icelake_remote(base["bytedance-ddr5-remote-socket"], icelake),
    ]
    assert tuple(p.name for p in profiles) == PUBLISHED_SETUPS
    return profiles


def _derived(
    base: NodeProfile,
    factor: float,
    name: str,
    description: str,
    provenance: dict[str, str],
    idle_latency_ns: float | None = None,
) -> NodeProfile:
    """``base`` with every bandwidth x ``factor`` (latency kept in units of load)."""
    return replace(
        base.scaled(factor, name=name),
        description=description,
        provenance=provenance,
        idle_latency_ns=base.idle_latency_ns if idle_latency_ns is None else idle_latency_ns,
    )


def _read_peak(profile: NodeProfile) -> float:
    return float(profile.saturation_gbps(1.0))


def _meta_like_cxl(ddr: NodeProfile, asic: NodeProfile) -> NodeProfile:
    idle = ddr.idle_latency_ns + META_IDLE_GAP_NS
    half = ddr.scaled(META_BANDWIDTH_RATIO).bandwidth
    return replace(
        asic,
        name="meta-like-cxl",
        description="Meta-like production CXL: half the bytedance-ddr5-snc peak at every mix, "
        "idle +80 ns (N:M interleave patch, 2022)",
        idle_latency_ns=idle,
        bandwidth=half,
        provenance={
            "source": META_SOURCE,
            "method": f"capacity = {META_BANDWIDTH_RATIO} x bytedance-ddr5-snc at every read "
            f"mix (media {half.media_gbps:.2f} GB/s, the DDR node's write penalty "
            f"{half.write_penalty:.3f}; {_read_peak(ddr):.2f} -> {half.media_gbps:.2f} GB/s "
            f"reads only); idle = bytedance-ddr5-snc idle {ddr.idle_latency_ns:.2f} + "
            f"{META_IDLE_GAP_NS:.0f} = {idle:.2f} ns; loaded-latency curve (excess ns over "
            "idle against load as a fraction of capacity, per mix) from bytedance-cxl-asic",
            "assumptions": "the top tier is bytedance-ddr5-snc (the 2-channel SNC DDR5 domain); "
            "Meta published no read/write-mix breakdown, so 'half' is held at every mix and "
            "the capacity falls with writes as the DDR node's does; the measured ASIC "
            "expander curve stands for Meta's 'steeper' CXL curve",
        },
    )


def _xeon6_socket(spr: NodeProfile) -> NodeProfile:
    factor = (XEON6_CHANNELS / SPR_CHANNELS) * (XEON6_MTS / SPR_MTS)
    theoretical = XEON6_CHANNELS * XEON6_MTS * 8 / 1000  # GB/s, 8-byte channels
    return _derived(
        spr,
        factor,
        "xeon6-ddr5-6400-12ch",
        "Xeon 6 socket, DDR5-6400 x12 channels (SPR Mess fit scaled; Micron/Intel)",
        {
            "source": MICRON_INTEL_SOURCE + "; the references give no measured Xeon 6 peak "
            "bandwidth or latency",
            "method": f"spr-8460y-ddr5-socket (Mess, DDR5-4800 x8) with every bandwidth x "
            f"{factor:g} = {XEON6_CHANNELS}/{SPR_CHANNELS} channels x {XEON6_MTS}/{SPR_MTS} "
            f"MT/s ({_read_peak(spr):.1f} -> {factor * _read_peak(spr):.1f} GB/s reads only); "
            "mix dependence and latency curve in units of load kept; idle "
            f"{spr.idle_latency_ns:.1f} ns kept from the SPR socket",
            "assumptions": "the same fraction of the theoretical peak as the SPR socket "
            f"({factor * _read_peak(spr):.0f} of {theoretical:.0f} GB/s reads only); DDR5-6400 "
            "adds no idle latency over DDR5-4800",
        },
    )


def _cz122(x8: NodeProfile) -> NodeProfile:
    return replace(
        x8,
        name="micron-cz122-x8",
        description="One Micron CZ122 PCIe 5.0 x8 CXL memory module (generic x8 device curves)",
        provenance={
            "source": MICRON_INTEL_SOURCE + "; the references give no per-device CZ122 "
            "bandwidth or latency. The nearest published per-device figure, Micron CZ120 "
            "(PCIe 5.0 x8) up to 36 GB/s at MLC 2:1 (Micron's CZ120 announcement, Aug 2023, "
            "as reported by Tom's Hardware, 'Micron Unveils 128GB and 256GB CXL 2.0 Expansion "
            "Modules'), is within 2 % of generic-cxl-x8 at that mix "
            f"({float(x8.saturation_gbps(0.75)):.1f} GB/s at 3/4 reads)",
            "method": "generic-cxl-x8 unchanged: Mess-simulator device curves for the shape "
            f"and the read/write-mix capacity, idle {x8.idle_latency_ns:.2f} ns (the measured "
            "ByteDance ASIC expander idle)",
        },
    )


def _cz122_devices(one: NodeProfile) -> NodeProfile:
    return _derived(
        one,
        float(CZ122_DEVICES),
        "micron-cz122-x8-8dev",
        "Eight Micron CZ122 x8 CXL modules interleaved by the platform as one node",
        {
            "source": MICRON_INTEL_SOURCE,
            "method": f"micron-cz122-x8 with every bandwidth x {CZ122_DEVICES} "
            f"({_read_peak(one):.2f} -> {CZ122_DEVICES * _read_peak(one):.1f} GB/s reads "
            "only); the same latency curve in units of load and the same idle latency",
            "assumptions": "the platform interleaves the eight devices finely enough that they "
            "load evenly and act as one node; the paper's +24 % (reads only) and +39 % (mixed) "
            "bandwidth over DDR alone were not used",
        },
    )


def _scaled_to_read_peak(base: NodeProfile, peak: float, name: str, tier: str) -> NodeProfile:
    """A node of the DAMOS interleave v4 machine: ``base`` scaled to the published peak."""
    factor = peak / _read_peak(base)
    return _derived(
        base,
        factor,
        name,
        f"{tier} of the DAMOS interleave v4 test machine (128-core AMD), {peak:g} GB/s reads only",
        {
            "source": TABATABAI_SOURCE,
            "method": f"{base.name} with every bandwidth x {peak:g}/{_read_peak(base):.2f} = "
            f"{factor:.4f}, the published {peak:g} GB/s taken as the reads-only peak; mix "
            f"dependence and latency curve in units of load from {base.name}; idle "
            f"{base.idle_latency_ns:.2f} ns kept from {base.name} (no latency was published)",
            "assumptions": "the cover letter does not say at which read/write mix its "
            f"{peak:g} GB/s was measured (reads only assumed) nor anything of the devices "
            f"beyond it: {base.name} stands for their curve shape",
        },
    )


def _icelake_socket(spr: NodeProfile) -> NodeProfile:
    factor = (ICELAKE_CHANNELS / SPR_CHANNELS) * (ICELAKE_MTS / SPR_MTS)
    theoretical = ICELAKE_CHANNELS * ICELAKE_MTS * 8 / 1000
    return _derived(
        spr,
        factor,
        "icelake-ddr4-socket",
        "Ice Lake-SP socket, DDR4-3200 x8 channels (Colloid's default tier)",
        {
            "source": COLLOID_SOURCE + "; idle latency: Mess (Esmaili-Dokht et al., MICRO "
            "2024) Xeon Gold 5218 (Cascade Lake, DDR4-2933 x6) local curve, 90 ns "
            "(github.com/bsc-mem/Mess-Results Systems/EPEEC4/local/processed/memory_curves.csv)",
            "method": f"spr-8460y-ddr5-socket (Mess, DDR5-4800 x8) with every bandwidth x "
            f"{ICELAKE_CHANNELS}/{SPR_CHANNELS} channels x {ICELAKE_MTS}/{SPR_MTS} MT/s = "
            f"{factor:.4f} ({_read_peak(spr):.1f} -> {factor * _read_peak(spr):.1f} GB/s reads "
            "only); mix dependence and latency curve in units of load kept; idle "
            f"{ICELAKE_IDLE_NS:.1f} ns from the Cascade Lake DDR4 socket, the nearest Intel "
            "DDR4 server measured with the shape source's method (Mess pointer chase)",
            "assumptions": "the references give neither channel count, DIMM speed nor latency "
            "of Colloid's machine: all 8 channels of the Ice Lake-SP platform (Intel's "
            "specification) populated with DDR4-3200; the same fraction of the theoretical "
            "peak as the SPR socket "
            f"({factor * _read_peak(spr):.0f} of {theoretical:.1f} GB/s reads only)",
        },
        idle_latency_ns=ICELAKE_IDLE_NS,
    )


def _icelake_remote(remote: NodeProfile, local: NodeProfile) -> NodeProfile:
    peak = SKYLAKE_REMOTE_READ_GBPS * ICELAKE_UPI_GTS / SKYLAKE_UPI_GTS
    idle = local.idle_latency_ns + REMOTE_GAP_NS
    return _derived(
        remote,
        peak / _read_peak(remote),
        "icelake-ddr4-remote-socket",
        "The other Ice Lake-SP socket's DDR4 reached over UPI (Colloid's alternate tier)",
        {
            "source": COLLOID_SOURCE + "; UPI-bound remote bandwidth: Skylake-SP remote-socket "
            "DDR4 curve, 35.2 GB/s (github.com/bsc-mem/Mess-simulator Integrated/ZSim+"
            "Standalone/memory_curve/Skylake-numa-ddr4/bwlat_98.txt; "
            "docs/references.md#remote-socket)",
            "method": f"bytedance-ddr5-remote-socket scaled to a reads-only peak of "
            f"{SKYLAKE_REMOTE_READ_GBPS} x {ICELAKE_UPI_GTS}/{SKYLAKE_UPI_GTS} GT/s (Ice "
            f"Lake-SP / Skylake-SP UPI rate) = {peak:.2f} GB/s ({_read_peak(remote):.2f} -> "
            f"{peak:.2f}); mix dependence and latency curve in units of load from "
            f"bytedance-ddr5-remote-socket; idle = icelake-ddr4-socket idle "
            f"{local.idle_latency_ns:.1f} + {REMOTE_GAP_NS:.0f} ns (middle of the +50-60 ns "
            f"local->remote gap of MLC latency matrices, docs/references.md#remote-socket) = "
            f"{idle:.1f} ns",
            "assumptions": "the UPI rates are Intel's platform specifications, not from the "
            "references; remote reads of a whole socket are UPI-bound "
            "(docs/references.md#remote-socket: "
            "34.4 vs 79.7 GB/s local in a public MLC matrix; Skylake 35.2 GB/s) and "
            "Colloid's Ice Lake has as many UPI links as the measured Skylake; the remote "
            "mix dependence is the ByteDance SNC domain's (measured where writes, not reads, "
            "were UPI-limited; valid for read fractions >= 2/3); the other socket's own "
            "traffic to this memory is not charged to the node",
        },
        idle_latency_ns=idle,
    )


def _setup_section(profile: NodeProfile) -> str:
    """Report section of a published-setup profile: its provenance and its capacities."""
    lines = [f"Profile {profile.name} ({profile.kind}): idle {profile.idle_latency_ns:.1f} ns", ""]
    lines += [f"- {key}: {text}" for key, text in profile.provenance.items()]
    lines += ["", "| read fraction | mix | capacity GB/s |", "|---|---|---|"]
    for r, mix in REPORT_MIXES:
        lines.append(f"| {r:.3f} | {mix} | {float(profile.saturation_gbps(r)):.2f} |")
    return "\n".join(lines) + "\n"


# Read fractions at the memory controller (a store with RFO is one read plus one write).
REPORT_MIXES = [
    (1.0, "reads only (MLC -W0)"),
    (0.75, "MLC 2:1 (-W2)"),
    (2 / 3, "MLC 1:1 (-W5)"),
    (0.5, "stores only"),
    (0.0, "non-temporal writes only (-W6)"),
]


def _peak_table(profile: NodeProfile) -> str:
    lines = [
        "| STREAM kernel | reads | published CXL-only GB/s | model capacity GB/s |",
        "|---|---|---|---|",
    ]
    for kernel, r, bw in STREAM_PEAKS:
        lines.append(f"| {kernel} | {r:.3f} | {bw:.2f} | {float(profile.saturation_gbps(r)):.2f} |")
    return "\n".join(lines) + "\n"


def _with_bandwidth(profile: NodeProfile, bandwidth) -> NodeProfile:
    """Swap the saturation model, keeping the latency curve's absolute bandwidth axis at r=1."""
    curve = profile.latency
    if not isinstance(curve, ParametricCurve):
        raise TypeError(f"{profile.name}: rescaling needs a parametric latency curve")
    rescale = float(profile.saturation_gbps(1.0)) / float(bandwidth(1.0))
    return replace(
        profile,
        bandwidth=bandwidth,
        latency=ParametricCurve(
            curve.read_fraction, curve.a_ns, curve.exponent, curve.headroom * rescale
        ),
    )


def write_calibration_report(
    fits: list[ProfileFit], results: Path, command: str, profile_dir: Path | None = None
) -> Path:
    """Plots and a Markdown fit table under ``results``; profiles into ``profile_dir``."""
    sections = [
        "# Calibration of the shipped node profiles\n\n",
        stamp(command),
        "\nErrors are on each curve's rising branch (idle up to 98 % of its peak), comparing "
        "the profile as the solver uses it with the measurement. Plots: `<profile>.png`.\n",
    ]
    for fit in fits:
        profile = fit.profile
        if profile_dir is not None:
            _save_unless_unchanged(profile, profile_dir / f"{profile.name}.toml")
        sections.append(f"\n## {profile.name}\n\n{profile.description}\n\n")
        if profile.name in PUBLISHED_SETUPS:
            sections.append(_setup_section(profile))
            continue
        sections.append(fit_table(fit, TOLERANCE))
        if fit.reports:
            plot_fit(fit, results / f"{profile.name}.png")
        else:
            sections.append("\n" + _peak_table(profile))
    report = results / "README.md"
    write_text_atomically(report, "".join(sections))
    return report


# Relative change below which a rebuilt profile counts as the one on disk: the optimiser's
# last digits differ between machines and library versions (about 1e-5 here).
REWRITE_RTOL = 1e-4


def _save_unless_unchanged(profile: NodeProfile, path: Path) -> bool:
    """Write ``profile`` to ``path`` unless the file holds it already; True if written.

    "Already" means the same fields, strings equal and numbers within ``REWRITE_RTOL``, so a
    rebuild on another machine does not churn the last digits of every shipped file.
    """
    try:
        on_disk = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        on_disk = None
    if on_disk is not None and _agrees(profile.to_dict(), on_disk):
        return False
    profile.save(path)
    return True


def _agrees(new, old) -> bool:
    if isinstance(new, dict):
        return (
            isinstance(old, dict)
            and new.keys() == old.keys()
            and all(_agrees(new[key], old[key]) for key in new)
        )
    if isinstance(new, list):
        return (
            isinstance(old, list)
            and len(new) == len(old)
            and all(_agrees(a, b) for a, b in zip(new, old, strict=True))
        )
    if isinstance(new, int | float) and not isinstance(new, bool):
        return (
            isinstance(old, int | float)
            and not isinstance(old, bool)
            and math.isclose(new, old, rel_tol=REWRITE_RTOL, abs_tol=1e-12)
        )
    return new == old
