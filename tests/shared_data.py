"""Where tests find the reference data: the copy shipped in the repository's ``data/`` first,
then ``../shared/data`` beside the repository (the full reference folder, which also holds
the files that may not be redistributed: the Mess curves, see ``data/README.md``).

Both folders have the same layout, so a test names a file by its path under ``data/``::

    from tests.shared_data import data_path, needs_data

    @needs_data("masim/stairs.cfg")
    def test_...():
        load_masim(data_path("masim/stairs.cfg"))
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_REPO = REPO / "data"  # shipped: MLC logs, masim configs, the DAMON record
SHARED_ROOT = REPO.parent / "shared"  # the reference folder beside the repository
SHARED = SHARED_ROOT / "data"
MLC = "mlc/bytedance-eurosys24"
MESS_CSV = "mess/spr-8460y-ddr5_memory_curves.csv"
MESS_BWLAT = "mess/cxl-expander-model"
DAMO_RECORD = "damo/damon.data.json_compressed"


def data_path(relative: str) -> Path:
    """``data/<relative>`` in the repository if it is shipped there, else
    ``../shared/data/<relative>`` (which may not exist: pair with ``needs_data``)."""
    shipped = IN_REPO / relative
    return shipped if shipped.exists() else SHARED / relative


def reference_root(*relative: str) -> Path:
    """The folder holding ``data/`` (what ``tierenv.hardware.shipped.build`` and
    ``tierenv report --shared`` take) that has every path in ``relative``: the repository's
    root when it ships them all, else ``../shared``."""
    if all((IN_REPO / r).exists() for r in relative):
        return REPO
    return SHARED_ROOT


def needs_data(*relative: str) -> pytest.MarkDecorator:
    """Skip unless every path (under ``data/``) is in the repository or in ``../shared``."""
    missing = [r for r in relative if not data_path(r).exists()]
    return pytest.mark.skipif(
        bool(missing),
        reason=(
            f"reference data {', '.join(missing)} not found in {IN_REPO} nor in {SHARED}"
            + (
                " (the Mess curves are not redistributable, so only ../shared has them: "
                "data/README.md)"
                if any(r.startswith("mess") for r in missing)
                else ""
            )
        ),
    )


#: The Mess curves: only in ../shared.
needs_mess = needs_data(MESS_CSV, MESS_BWLAT)
