"""requirements.lock pins what pyproject.toml asks for, and the test environment is the lock."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[2]
SELF = "stateful-route"
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+?)(?: ; (?P<marker>[^\\]+?))?\s*\\?$"
)


def locked(lock: str = "requirements.lock") -> dict[str, tuple[Version, Marker | None]]:
    """Each pinned package of a lock: its version and the marker it applies under."""
    pins: dict[str, tuple[Version, Marker | None]] = {}
    for line in (ROOT / lock).read_text().splitlines():
        if (match := PIN.match(line)) is not None:
            marker = Marker(match["marker"]) if match["marker"] else None
            pins[canonicalize_name(match["name"])] = (Version(match["version"]), marker)
    return pins


def direct_requirements() -> list[Requirement]:
    """What pyproject.toml asks for: the runtime, every extra, and the build backend."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    texts = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for extra in project["project"]["optional-dependencies"].values():
        texts.extend(extra)
    return [req for req in map(Requirement, texts) if canonicalize_name(req.name) != SELF]


def test_every_requirement_is_locked_at_a_version_it_allows() -> None:
    pins = locked()
    for req in direct_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is in pyproject.toml but not in requirements.lock: run `make lock`"
        version, _ = pins[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, which pyproject.toml's {req} refuses: run `make lock`"
        )


def test_nothing_is_locked_for_a_requirement_pyproject_no_longer_has() -> None:
    wanted = {canonicalize_name(req.name) for req in direct_requirements()}
    text = (ROOT / "requirements.lock").read_text()
    # uv marks a requirement of pyproject.toml "via stateful-route (pyproject.toml)"; the build backend,
    # read from standard input by `make lock`, has no "via" at all.
    direct = {
        canonicalize_name(block.split("==", 1)[0])
        for block in re.split(r"\n(?=[A-Za-z0-9])", text)
        if "==" in block and ("stateful-route (pyproject.toml)" in block or "# via" not in block)
    }
    assert direct <= wanted, f"locked as direct but gone from pyproject.toml: {sorted(direct - wanted)}"
    assert direct == wanted


def test_the_environment_is_the_lock() -> None:
    """`make` installed exactly the locked versions (`make test-latest` deselects this on purpose)."""
    for name, (version, marker) in locked().items():
        if marker is not None and not marker.evaluate():
            continue
        assert Version(metadata.version(name)) == version, f"{name}: installed, not the locked {version}"


def test_the_operator_image_installs_a_subset_of_the_lock_at_the_same_versions() -> None:
    image = locked("requirements-operator.lock")
    assert {"kopf", "kubernetes", "redis", "setuptools"} <= image.keys()
    everything = locked()
    assert {name: version for name, (version, _) in image.items()} == {
        name: everything[name][0] for name in image
    }, "requirements-operator.lock drifted from requirements.lock: run `make lock`"
    assert "--require-hashes --no-deps -r requirements-operator.lock" in (ROOT / "Dockerfile").read_text()
