"""A small private CA for the fleet: one CA, a server certificate per broker, a client certificate per account.

Keys are ECDSA P-256. Everything is PEM text in and out; writing files is `provisioning.render`'s job.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_BEFORE_DAYS = 30


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM."""

    certificate: bytes
    key: bytes


def new_ca(common_name: str, now: datetime.datetime | None = None) -> KeyPair:
    """A self-signed CA certificate that may sign leaf certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = _builder(name, name, key.public_key(), now, CA_DAYS)
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    builder = builder.add_extension(_key_usage(certificate_sign=True), critical=True)
    return KeyPair(_pem(builder.sign(key, hashes.SHA256())), _key_pem(key))


def issue(
    ca: KeyPair,
    common_name: str,
    names: Sequence[str] = (),
    server: bool = False,
    now: datetime.datetime | None = None,
) -> KeyPair:
    """A leaf certificate signed by `ca`: server (with `names` as DNS/IP SANs) or client."""
    ca_certificate = x509.load_pem_x509_certificate(ca.certificate)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = _builder(subject, ca_certificate.subject, key.public_key(), now, LEAF_DAYS)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    builder = builder.add_extension(_key_usage(certificate_sign=False), critical=True)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(_alt_names(names)), critical=False)
    return KeyPair(_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key))  # type: ignore[arg-type]


def still_good(pair: KeyPair, ca: KeyPair, names: Sequence[str] = (), now: datetime.datetime | None = None) -> bool:
    """True when `pair` was signed by `ca`, covers `names` and stays valid for a while (so it can be kept)."""
    try:
        certificate = x509.load_pem_x509_certificate(pair.certificate)
        certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.certificate))
    except (ValueError, TypeError, InvalidSignature):  # unreadable or signed by another CA: issue a new one
        return False
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    if certificate.not_valid_after_utc - moment < datetime.timedelta(days=RENEW_BEFORE_DAYS):
        return False
    return not names or set(_covered_names(certificate)) == set(names)


def _covered_names(certificate: x509.Certificate) -> list[str]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    alternative = extension.value
    return [*alternative.get_values_for_type(x509.DNSName), *map(str, alternative.get_values_for_type(x509.IPAddress))]


def _alt_names(names: Sequence[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime.datetime | None,
    days: int,
) -> x509.CertificateBuilder:
    start = (now or datetime.datetime.now(datetime.timezone.utc)) - datetime.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
    )


def _key_usage(certificate_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not certificate_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not certificate_sign,
        key_cert_sign=certificate_sign,
        crl_sign=certificate_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
