"""Throwaway certificates for a test control plane: one CA, the API server's serving certificate,
client certificates (the identity is the subject: CN the user, O the groups) and the
service-account signing key pair. Everything is written as PEM files into one folder."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertPair", "Pki", "make_pki"]

# Names and addresses clients use for the API server: loopback in tests, and the in-cluster
# names and first service IP that the API server itself puts in the `kubernetes` Service.
SERVING_DNS = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               "kubernetes.default.svc.cluster.local"]  # fmt: skip
SERVING_IPS = ["127.0.0.1", "10.0.0.1"]
LIFETIME = datetime.timedelta(days=1)


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    serving: CertPair
    sa_key: Path  # signs service-account tokens (API server, controller-manager)
    sa_pub: Path  # verifies them (API server)
    folder: Path

    def client(self, user: str, *groups: str) -> CertPair:
        """A client certificate for ``user`` in ``groups``, signed by the CA (cached by name)."""
        cert = self.folder / f"{user.replace(':', '_')}.crt"
        key = self.folder / f"{user.replace(':', '_')}.key"
        if not cert.exists():
            ca_key = serialization.load_pem_private_key((self.folder / "ca.key").read_bytes(), None)
            assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
            ca_cert = x509.load_pem_x509_certificate(self.ca.read_bytes())
            subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
            subject.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
            _issue(cert, key, ca_cert, ca_key, x509.Name(subject), client=True)
        return CertPair(cert, key)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _issue(
    cert_path: Path,
    key_path: Path,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    *,
    client: bool,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # other processes' clocks
        .not_valid_after(now + LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if not client:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVING_DNS]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVING_IPS]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert_path.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)


def make_pki(folder: Path) -> Pki:
    """A CA, the API server's serving certificate and the service-account key pair in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stateful-route test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(folder / "ca.key", ca_key)
    serving = CertPair(folder / "apiserver.crt", folder / "apiserver.key")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    _issue(serving.cert, serving.key, ca_cert, ca_key, subject, client=False)
    # RSA: the key type every Kubernetes version accepts for service-account tokens (RS256).
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(folder / "sa.key", sa_key)
    (folder / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Pki(ca=folder / "ca.crt", serving=serving, sa_key=folder / "sa.key", sa_pub=folder / "sa.pub",
               folder=folder)  # fmt: skip
