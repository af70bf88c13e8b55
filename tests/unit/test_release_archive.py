"""The previous release's package, committed as test data for the mixed-releases tests, is
exactly the tag's (checked when the tag is there: a clone without tags still runs the tests)."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from stateful_route.testing.releases import ARCHIVE, PREVIOUS, unpack

ROOT = Path(__file__).parents[2]


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, timeout=60, check=False)


def test_the_archive_is_the_release_package_and_unpacks_to_an_importable_path(tmp_path):
    with tarfile.open(ARCHIVE) as archive:
        names = archive.getnames()
    assert all(name.startswith("operator/stateful_route") for name in names if name != "operator")
    assert "operator/stateful_route/store/scripts.py" in names  # 0.1.0 kept its Lua in Python
    path = unpack(tmp_path)
    assert (path / "stateful_route" / "__init__.py").is_file()


def test_the_archive_matches_the_tag_file_by_file(tmp_path):
    tag = f"v{PREVIOUS}"
    if _git("rev-parse", "--verify", "--quiet", f"{tag}^{{commit}}").returncode != 0:
        pytest.skip(f"no tag {tag} in this clone (CI clones without tags)")
    listed = _git("ls-tree", "-r", "--name-only", tag, "operator/stateful_route").stdout.decode().split()
    with tarfile.open(ARCHIVE) as archive:
        files = {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert sorted(files) == sorted(listed)
    for name in listed:
        assert files[name] == _git("show", f"{tag}:{name}").stdout, name
