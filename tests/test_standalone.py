"""The repository stands alone: the reference data it ships, their provenance and the licence
(issue 20). A clone without ../shared runs the data tests from data/."""

from __future__ import annotations

import filecmp
import tomllib

import pytest

from tests.shared_data import DAMO_RECORD, IN_REPO, MLC, REPO, SHARED, data_path, reference_root

SHIPPED_FOLDERS = ("mlc/bytedance-eurosys24", "masim", "damo")


def shipped_files() -> list[str]:
    return sorted(
        str(path.relative_to(IN_REPO))
        for folder in SHIPPED_FOLDERS
        for path in (IN_REPO / folder).rglob("*")
        if path.is_file()
    )


def test_the_measurements_tests_use_are_shipped_in_data():
    assert len([f for f in shipped_files() if f.startswith("mlc/")]) == 12
    assert len([f for f in shipped_files() if f.startswith("masim/")]) == 5
    assert (IN_REPO / DAMO_RECORD).is_file()
    # the tests read these from the repository, not from ../shared
    for relative in (MLC, "masim/stairs.cfg", DAMO_RECORD):
        assert data_path(relative).is_relative_to(IN_REPO)
    assert reference_root(MLC) == REPO
    # and stay small
    total = sum((IN_REPO / f).stat().st_size for f in shipped_files())
    assert total < 1 << 20, f"data/ holds {total} bytes of measurements"


def test_every_shipped_folder_has_its_provenance_and_licence_in_the_data_readme():
    readme = (IN_REPO / "README.md").read_text()
    for folder, origin, licence in [
        ("mlc/bytedance-eurosys24/", "github.com/bytedance/eurosys24-artifacts", "Apache-2.0"),
        ("masim/", "github.com/damonitor/masim", "GPL-2.0"),
        ("damo/damon.data.json_compressed", "github.com/damonitor/damo", "GPL-2.0"),
    ]:
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{folder}"))
        assert origin in row and licence in row and "commit " in row, folder
    assert "GNU GENERAL PUBLIC LICENSE" in (IN_REPO / "LICENSES" / "GPL-2.0.txt").read_text()


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no reference folder at {SHARED} to compare")
def test_the_shipped_files_are_the_reference_files_unchanged():
    for relative in shipped_files():
        assert filecmp.cmp(IN_REPO / relative, SHARED / relative, shallow=False), relative


def test_the_licence_file_is_the_apache_licence_pyproject_names():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a pointer
