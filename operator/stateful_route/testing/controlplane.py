"""A real Kubernetes control plane for tests: etcd, kube-apiserver and kube-controller-manager on
free loopback ports, with RBAC on, an admin identity and a kubeconfig for it.

There is no scheduler and no kubelet: ``stateful_route.testing.kubelet`` registers a node, binds
pods to it and plays kubelet's part in their lives. The binaries come from ``make control-plane``
or ``KUBEBUILDER_ASSETS`` (see ``binaries``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import kubernetes
import yaml

from stateful_route.testing.binaries import Binaries, find_binaries
from stateful_route.testing.local_redis import free_port
from stateful_route.testing.pki import CertPair, Pki, make_pki

__all__ = ["ADMIN_GROUP", "ControlPlane", "ControlPlaneFailed"]

ADMIN_GROUP = "system:masters"  # bound to cluster-admin by the API server's bootstrap policy
SERVICE_RANGE = "10.0.0.0/24"
ISSUER = "https://kubernetes.default.svc.cluster.local"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies, even by SIGKILL, so that
    a killed test run leaves no server behind on a shared machine (Linux only). Not SIGTERM:
    all three would get it at once, and an API server whose etcd is gone hangs in its
    graceful shutdown."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ControlPlaneFailed(RuntimeError):
    """A server exited or did not become ready; the message ends with its log's last lines."""


class _Server:
    """One server process, its output in ``<folder>/<name>.log``."""

    def __init__(self, name: str, args: list[str], folder: Path) -> None:
        self.name = name
        self.args = args
        self.log = folder / f"{name}.log"
        self._output: IO[bytes] = self.log.open("ab")  # a restarted server's log goes on
        self.process = subprocess.Popen(
            args, stdout=self._output, stderr=subprocess.STDOUT, cwd=folder, preexec_fn=_die_with_parent
        )

    def check(self) -> None:
        if self.process.poll() is not None:
            raise ControlPlaneFailed(f"{self.name} exited with {self.process.returncode}\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._output.close()


class ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager in ``folder`` (certificates, data, logs,
    kubeconfigs); a context manager that stops them all on exit."""

    def __init__(
        self,
        folder: Path,
        binaries: Binaries | None = None,
        *,
        start_within: float = 90,
        apiserver_args: Sequence[str] = (),
    ) -> None:
        """``apiserver_args`` go to kube-apiserver after the usual flags (an audit log, say)."""
        self.folder = folder
        self.apiserver_args = list(apiserver_args)
        self.binaries = binaries or find_binaries()
        self.start_within = start_within
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = folder / "admin.kubeconfig"
        self.pki: Pki | None = None
        self.admin: CertPair | None = None
        self._servers: list[_Server] = []

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        self.folder.mkdir(parents=True, exist_ok=True)
        pki = self.pki = make_pki(self.folder / "pki")
        self.admin = pki.client("admin", ADMIN_GROUP)
        self.write_kubeconfig(self.kubeconfig, "admin", cert=self.admin)
        deadline = time.monotonic() + self.start_within
        etcd_url = self._start_etcd()
        self._start_apiserver(pki, etcd_url)
        self._wait(deadline, "kube-apiserver /readyz", lambda: self._get("/readyz") == "ok")
        manager = self.write_kubeconfig(
            self.folder / "controller-manager.kubeconfig", "system:kube-controller-manager",
            cert=pki.client("system:kube-controller-manager"),
        )  # fmt: skip
        self._start_controller_manager(pki, manager)
        # The service-account controller has run once it made `default` in `default`: the
        # controller-manager is up, logged in and authorised.
        self._wait(deadline, "the default ServiceAccount", self._has_default_account)
        return self

    def stop(self) -> None:
        """Stop the servers, the controller-manager first and etcd last."""
        while self._servers:
            self._servers.pop().stop()

    def restart_apiserver(self) -> None:
        """Stop the API server and start it again (same port, flags and etcd), as an upgrade or a
        crash would: every watch is cut, and the new server's watch cache begins at etcd's
        current revision, so a client resuming a watch from an older resourceVersion is answered
        410 Gone and must list again. Call it from the thread that started the control plane (or
        one that outlives the server): the new server dies with the thread that starts it."""
        [at] = [i for i, server in enumerate(self._servers) if server.name == "kube-apiserver"]
        old = self._servers[at]
        old.stop()
        self._servers[at] = _Server(old.name, old.args, self.folder)
        deadline = time.monotonic() + self.start_within
        self._wait(deadline, "kube-apiserver /readyz", lambda: self._get("/readyz") == "ok")

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        self._servers.append(_Server("etcd", [
            str(self.binaries.etcd), "--data-dir", str(self.folder / "etcd"),
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"default={peer_url}",
            "--unsafe-no-fsync",  # throwaway data: durability only costs the tests time
            "--log-level", "warn",
        ], self.folder))  # fmt: skip
        return url

    def _start_apiserver(self, pki: Pki, etcd_url: str) -> None:
        self._servers.append(_Server("kube-apiserver", [
            str(self.binaries.kube_apiserver),
            "--etcd-servers", etcd_url,
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.port), "--cert-dir", str(self.folder / "pki"),
            "--tls-cert-file", str(pki.serving.cert), "--tls-private-key-file", str(pki.serving.key),
            "--client-ca-file", str(pki.ca),
            # The endpoint reconciler refuses a loopback address for the `kubernetes` Service's
            # endpoints; nothing here reaches the API server through that Service.
            "--endpoint-reconciler-type", "none",
            "--authorization-mode", "Node,RBAC",
            "--service-cluster-ip-range", SERVICE_RANGE,
            "--service-account-issuer", ISSUER,
            "--service-account-key-file", str(pki.sa_pub),
            "--service-account-signing-key-file", str(pki.sa_key),
            "--allow-privileged=true",
            "--profiling=false",
            *self.apiserver_args,
        ], self.folder))  # fmt: skip

    def _start_controller_manager(self, pki: Pki, kubeconfig: Path) -> None:
        self._servers.append(_Server("kube-controller-manager", [
            str(self.binaries.kube_controller_manager),
            "--kubeconfig", str(kubeconfig),
            "--authentication-kubeconfig", str(kubeconfig), "--authorization-kubeconfig", str(kubeconfig),
            "--bind-address", "127.0.0.1", "--secure-port", str(free_port()),
            "--cert-dir", str(self.folder / "controller-manager"),
            # No node-lifecycle controller: our node has no kubelet heartbeats, and the controller
            # would taint it unreachable and evict every pod on it.
            "--controllers", "*,-node-lifecycle-controller",
            "--leader-elect=false",
            # Each controller under its own service account, as kubeadm runs it, so that RBAC
            # applies to the StatefulSet controller as in a real cluster.
            "--use-service-account-credentials=true",
            "--service-account-private-key-file", str(pki.sa_key),
            "--root-ca-file", str(pki.ca),
            "--cluster-signing-cert-file", str(pki.ca),
            "--cluster-signing-key-file", str(pki.folder / "ca.key"),
            "--profiling=false",
        ], self.folder))  # fmt: skip

    def _wait(self, deadline: float, what: str, ready: Any) -> None:
        while True:
            for server in self._servers:
                server.check()
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                if ready():
                    return
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {s.name}\n{s.tail(10)}" for s in self._servers)
                raise ControlPlaneFailed(f"{what} not ready within {self.start_within} s\n{logs}")
            time.sleep(0.2)

    def _ssl(self) -> ssl.SSLContext:
        assert self.pki is not None
        assert self.admin is not None
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        context.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        return context

    def _get(self, path: str) -> str:
        """GET ``path`` as admin with the standard library (before any client is needed)."""
        with urllib.request.urlopen(self.url + path, context=self._ssl(), timeout=5) as response:
            return str(response.read().decode())

    def _has_default_account(self) -> bool:
        try:
            body = json.loads(self._get("/api/v1/namespaces/default/serviceaccounts/default"))
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return False
            raise
        return bool(body.get("metadata", {}).get("uid"))

    def write_kubeconfig(
        self, path: Path, user: str, *, cert: CertPair | None = None, token: str | None = None,
        namespace: str | None = None,
    ) -> Path:  # fmt: skip
        """A kubeconfig for this API server, logged in with a client certificate or a token."""
        assert self.pki is not None
        credentials: dict[str, str] = {}
        if cert is not None:
            credentials = {"client-certificate": str(cert.cert), "client-key": str(cert.key)}
        if token is not None:
            credentials["token"] = token
        context: dict[str, str] = {"cluster": "test", "user": user}
        if namespace is not None:
            context["namespace"] = namespace
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.url,
                                                      "certificate-authority": str(self.pki.ca)}}],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": "test", "context": context}],
            "current-context": "test",
        }))  # fmt: skip
        path.chmod(0o600)
        return path

    def service_account_kubeconfig(self, namespace: str, name: str, *, hours: int = 1) -> Path:
        """A kubeconfig logged in as a ServiceAccount, with a token from the TokenRequest API (what
        a pod of that account gets mounted), to run something with exactly that account's RBAC."""
        request = kubernetes.client.AuthenticationV1TokenRequest(
            spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=hours * 3600)
        )
        with self.api_client() as client:
            made = kubernetes.client.CoreV1Api(client).create_namespaced_service_account_token(
                name, namespace, request
            )
        assert made.status is not None
        token = made.status.token
        user = f"system:serviceaccount:{namespace}:{name}"
        return self.write_kubeconfig(self.folder / f"{namespace}-{name}.kubeconfig", user, token=token)

    def api_client(self, kubeconfig: Path | None = None) -> kubernetes.client.ApiClient:
        """The official client, logged in as admin (or through ``kubeconfig``)."""
        client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(
            config_file=str(kubeconfig or self.kubeconfig)
        )
        return client

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the matching kubectl against this API server (as admin unless ``kubeconfig``)."""
        command = [str(self.binaries.kubectl), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        return subprocess.run(command, input=stdin, capture_output=True, text=True, check=check, timeout=60)

    def logs(self) -> dict[str, Path]:
        """Each running server's log file, by name."""
        return {server.name: server.log for server in self._servers}
