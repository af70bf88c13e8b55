"""The operator logs in with the credentials of its kubeconfig (or its service account): a token
reaches kopf, and so do client certificates; without them kopf connects as system:anonymous."""

from __future__ import annotations

from pathlib import Path

import yaml

from stateful_route.controller.login import connection_info


def kubeconfig(folder: Path, user: dict[str, str]) -> str:
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }))  # fmt: skip
    return str(path)


def test_a_token_reaches_kopf(tmp_path: Path):
    info = connection_info(kubeconfig(tmp_path, {"token": "s3cret"}))
    assert info.server == "https://127.0.0.1:6443"
    assert (info.scheme, info.token) == ("Bearer", "s3cret")


def test_client_certificates_reach_kopf(tmp_path: Path):
    (tmp_path / "c.crt").write_text("cert")
    (tmp_path / "c.key").write_text("key")
    info = connection_info(kubeconfig(tmp_path, {"client-certificate": str(tmp_path / "c.crt"),
                                                 "client-key": str(tmp_path / "c.key")}))  # fmt: skip
    assert info.certificate_path == str(tmp_path / "c.crt")
    assert info.private_key_path == str(tmp_path / "c.key")
    assert info.token is None
