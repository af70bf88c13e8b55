"""Logging in to Kubernetes with the official client: in-cluster service account, else kubeconfig."""

from __future__ import annotations

import kopf
import kubernetes

__all__ = ["api_client", "connection_info"]


def _configuration(kubeconfig: str | None) -> kubernetes.client.Configuration:
    cfg = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=cfg)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    return cfg


def api_client(kubeconfig: str | None = None) -> kubernetes.client.ApiClient:
    """An official-client ApiClient logged in the same way (for calls outside kopf's handlers)."""
    return kubernetes.client.ApiClient(_configuration(kubeconfig))


def connection_info(kubeconfig: str | None = None) -> kopf.ConnectionInfo:
    """Credentials for kopf, read the way ``kubectl`` and the official client read them."""
    cfg = _configuration(kubeconfig)
    # The official client keeps a kubeconfig's or a service account's token under "BearerToken"
    # ("authorization" only for basic auth): missing it, kopf would connect anonymously.
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization") or ""
    scheme, _, token = header.partition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert or None,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=cfg.cert_file or None,
        private_key_path=cfg.key_file or None,
    )
