"""A throwaway PKI for TLS tests, made with `cryptography`: a CA, server certificates (valid,
expired, for another name, a second one to rotate to), a client certificate, and a CA nobody
trusts. EC P-256 keys: generating them takes microseconds, RSA keys most of a second."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# What the good server certificates are valid for: the test's loopback address, the name the
# gateway is reached by, and the name an upstream is reached by through `server_name`.
SERVER_NAMES = ("127.0.0.1", "localhost", "gateway.test", "upstream.test")


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Pair
    # Same names, another key and serial: what a certificate rotation serves.
    rotated: Pair
    expired: Pair
    wrong_name: Pair
    client: Pair
    # A CA that signed nothing the tests trust.
    other_ca: Path


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    ca_key, ca_cert = _ca("strangler test CA", now, day)
    _, other_cert = _ca("nobody's CA", now, day)

    def leaf(
        name: str,
        names: tuple[str, ...],
        *,
        start: datetime.datetime,
        end: datetime.datetime,
        is_client: bool = False,
    ) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = []
        for item in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(item)))
            except ValueError:
                alt.append(x509.DNSName(item))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if is_client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return _write(folder, name, cert, key)

    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    other_path = folder / "other-ca.pem"
    other_path.write_bytes(other_cert.public_bytes(serialization.Encoding.PEM))
    return Pki(
        ca=ca_path,
        server=leaf("server", SERVER_NAMES, start=now - day, end=now + 30 * day),
        rotated=leaf("rotated", SERVER_NAMES, start=now - day, end=now + 30 * day),
        expired=leaf("expired", SERVER_NAMES, start=now - 30 * day, end=now - day),
        wrong_name=leaf("wrong", ("wrong.test",), start=now - day, end=now + 30 * day),
        client=leaf("client", (), start=now - day, end=now + 30 * day, is_client=True),
        other_ca=other_path,
    )


def _ca(
    name: str, now: datetime.datetime, day: datetime.timedelta
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - day)
        .not_valid_after(now + 365 * day)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _write(
    folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Pair:
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return Pair(cert_path, key_path)
