"""The orchestrator's own certificate authority for deployment agents (mutual TLS).

Agents never bring their own identity: they send a certificate signing request and get back a
certificate whose subject CN and SAN URI (`urn:stella:agent:<uuid>`) carry the agent id the
orchestrator assigned. Only the CSR's public key is used; its subject and requested extensions
are ignored, so an agent cannot ask for another agent's name, a CA certificate or server use.

The CA key and certificate live as two PEM files in one folder and are created at first start.
Several processes (server, workers) may start at once, so each file is published with
`os.link` from a fully written temporary file: linking fails if the name exists, exactly one
writer wins, and everyone (winner included) then reads back what was published. A reader can
never see a half-written file, and a crash between the two files is repaired by the next start.

EC P-256 keys throughout: quick to generate at first start and cheap on every handshake.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import secrets
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_KEY_FILE = "agent-ca.key"
CA_CERT_FILE = "agent-ca.crt"
LISTENER_CERT_FILE = "agent-listener.crt"
LISTENER_KEY_FILE = "agent-listener.key"
AGENT_URI_PREFIX = "urn:stella:agent:"

CA_VALIDITY = timedelta(days=3652)
LISTENER_VALIDITY = timedelta(days=365)
LISTENER_RENEW_BEFORE = timedelta(days=30)
# Certificates start slightly in the past so a peer whose clock lags a little accepts them.
CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_LISTENER_HOSTS = ("127.0.0.1", "localhost")
ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1)

_PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate handed to an agent; serial and fingerprint let the caller record it."""

    cert_pem: str
    serial: str  # lower-case hex, 32 digits
    fingerprint: str  # sha256 of the DER encoding, lower-case hex
    not_after: datetime


@dataclass(frozen=True)
class ClientIdentity:
    """Who is on the other end of an mTLS connection, as stated by a certificate we issued."""

    agent_id: uuid.UUID
    serial: str
    fingerprint: str


class CertificateRejected(ValueError):
    """A CSR or peer certificate is unacceptable. The message is safe to show to the client."""


class AgentCA:
    """Issues agent client certificates and the agent listener's server certificate."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        if cert.public_key() != key.public_key():
            msg = "the agent CA certificate does not belong to the agent CA key"
            raise ValueError(msg)
        self._key = key
        self._cert = cert

    @classmethod
    def load_or_create(cls, directory: Path) -> AgentCA:
        """The CA in `directory` (agent-ca.key, agent-ca.crt), created there if missing."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
        key_pem = _publish_once(key_path, lambda: _key_pem(_new_key()), 0o600)
        key = _load_ec_key(key_pem, key_path)
        # A crash between the two files leaves a key without certificate: the next start
        # publishes a certificate for that key, with the same once-only rule.
        cert_pem = _publish_once(cert_path, lambda: _self_signed_ca(key).public_bytes(_PEM), 0o644)
        try:
            return cls(key, x509.load_pem_x509_certificate(cert_pem))
        except ValueError:
            msg = (
                f"{cert_path} is not a certificate for {key_path}; restore both files from "
                "backup (removing both creates a new CA, and every agent must then re-enrol)"
            )
            raise RuntimeError(msg) from None

    @property
    def ca_cert_pem(self) -> str:
        return self._cert.public_bytes(_PEM).decode("ascii")

    def issue_client_certificate(
        self,
        csr_pem: str,
        agent_id: uuid.UUID,
        validity: timedelta,
        *,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """Sign the CSR's public key for `agent_id` (raise CertificateRejected).

        `now` exists for tests (an already expired certificate); the default is the clock.
        """
        if validity <= timedelta(0):
            msg = "validity must be positive"
            raise ValueError(msg)
        public_key = _checked_csr_key(csr_pem)
        start = (now or datetime.now(UTC)) - CLOCK_SKEW
        builder = (
            self._builder(public_key, str(agent_id), start, start + CLOCK_SKEW + validity)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"{AGENT_URI_PREFIX}{agent_id}")]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(
            cert_pem=cert.public_bytes(_PEM).decode("ascii"),
            serial=_serial_hex(cert.serial_number),
            fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
            not_after=cert.not_valid_after_utc,
        )

    def server_certificate_files(
        self, directory: Path, hosts: list[str], *, now: datetime | None = None
    ) -> tuple[Path, Path]:
        """(cert file, key file) for the agent listener, reissued only when needed.

        The files are kept while they name exactly these hosts (plus 127.0.0.1 and localhost),
        chain to this CA and stay valid for more than 30 days; otherwise both are replaced.
        A lock file serialises processes so a cert never ends up paired with another key.
        """
        current = now or datetime.now(UTC)
        names = _host_names([*hosts, *DEFAULT_LISTENER_HOSTS])
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        cert_path, key_path = directory / LISTENER_CERT_FILE, directory / LISTENER_KEY_FILE
        with _locked(directory / ".agent-listener.lock"):
            if self._listener_files_usable(cert_path, key_path, names, current):
                return cert_path, key_path
            key = _new_key()
            start = current - CLOCK_SKEW
            cert = (
                self._builder(
                    key.public_key(), _listener_cn(hosts), start, start + LISTENER_VALIDITY
                )
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
                )
                .sign(self._key, hashes.SHA256())
            )
            _replace(key_path, _key_pem(key), 0o600)
            _replace(cert_path, cert.public_bytes(_PEM), 0o644)
        return cert_path, key_path

    def identity(self, cert_der: bytes) -> ClientIdentity:
        """The agent named by a peer certificate (raise CertificateRejected).

        TLS has already verified the chain; the issuer signature is checked again so that a
        listener configured with a wider CA bundle still cannot let foreign certificates in.
        """
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError:
            msg = "client certificate is not valid DER"
            raise CertificateRejected(msg) from None
        try:
            cert.verify_directly_issued_by(self._cert)
        except (ValueError, TypeError, InvalidSignature):
            msg = "client certificate was not issued by this orchestrator's agent CA"
            raise CertificateRejected(msg) from None
        agent_id = _agent_id(cert)
        return ClientIdentity(
            agent_id=agent_id,
            serial=_serial_hex(cert.serial_number),
            fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        )

    def _builder(
        self,
        public_key: CertificatePublicKeyTypes,
        common_name: str,
        not_before: datetime,
        not_after: datetime,
    ) -> x509.CertificateBuilder:
        """A leaf certificate skeleton signed by this CA: never a CA, key identifiers set
        (strict X.509 verification, the default from Python 3.13 on, requires them)."""
        ca_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(_random_serial())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
        )

    def _listener_files_usable(
        self, cert_path: Path, key_path: Path, names: list[x509.GeneralName], now: datetime
    ) -> bool:
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cert.verify_directly_issued_by(self._cert)
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (
            OSError,
            ValueError,
            TypeError,
            InvalidSignature,
            UnsupportedAlgorithm,
            x509.ExtensionNotFound,
        ):
            return False  # missing, unreadable, from another CA or without SAN: issue anew
        return (
            key.public_key() == cert.public_key()
            and set(san) == set(names)
            and cert.not_valid_after_utc - now > LISTENER_RENEW_BEFORE
        )


def generate_agent_key_and_csr(name: str) -> tuple[str, str]:
    """(private key PEM, CSR PEM) for an agent; CN = name, which the CA will not copy anyway."""
    key = _new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    return _key_pem(key).decode("ascii"), csr.public_bytes(_PEM).decode("ascii")


def new_agent_key(key_file: Path) -> None:
    """Write a fresh EC P-256 private key to `key_file` (mode 0600).

    Refuses (FileExistsError) to replace an existing key: that key is the agent's identity,
    and losing it means enrolling the agent again.
    """
    key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = _write_temp(key_file.parent, _key_pem(_new_key()), 0o600)
    try:
        os.link(temp, key_file)
    finally:
        temp.unlink(missing_ok=True)


# --- CSR checks and certificate contents ---------------------------------------------------


def _checked_csr_key(csr_pem: str) -> CertificatePublicKeyTypes:
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode("utf-8"))
    except (ValueError, UnicodeError):
        msg = "certificate signing request is not valid PEM"
        raise CertificateRejected(msg) from None
    try:
        public_key = csr.public_key()
        signature_ok = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        msg = "certificate signing request uses an unsupported key type"
        raise CertificateRejected(msg) from None
    if not signature_ok:
        msg = "certificate signing request signature does not verify"
        raise CertificateRejected(msg)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return public_key
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(
        public_key.curve, ACCEPTED_CURVES
    ):
        return public_key
    msg = (
        f"certificate signing request uses an unsupported key type "
        f"({_key_kind(public_key)}); use EC P-256, EC P-384 or Ed25519"
    )
    raise CertificateRejected(msg)


def _key_kind(public_key: CertificatePublicKeyTypes) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"EC {public_key.curve.name}"
    return type(public_key).__name__.removeprefix("_").removesuffix("PublicKey") or "unknown"


def _agent_id(cert: x509.Certificate) -> uuid.UUID:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        san = x509.SubjectAlternativeName([])
    uris = [
        uri
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith(AGENT_URI_PREFIX)
    ]
    if len(uris) != 1:
        msg = f"client certificate does not name exactly one agent ({AGENT_URI_PREFIX}<uuid>)"
        raise CertificateRejected(msg)
    text = uris[0].removeprefix(AGENT_URI_PREFIX)
    try:
        agent_id = uuid.UUID(text)
    except ValueError:
        agent_id = None
    if agent_id is None or str(agent_id) != text:
        msg = f"client certificate names a malformed agent id ({AGENT_URI_PREFIX}<uuid>)"
        raise CertificateRejected(msg)
    return agent_id


def _self_signed_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Stella Release Orchestrator"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Stella agent CA"),
        ]
    )
    start = datetime.now(UTC) - CLOCK_SKEW
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_random_serial())
        .not_valid_before(start)
        .not_valid_after(start + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _host_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in (h.strip() for h in hosts):
        if not host:
            continue
        name: x509.GeneralName
        try:
            name = x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            name = x509.DNSName(host.lower())
        if name not in names:
            names.append(name)
    return names


def _listener_cn(hosts: list[str]) -> str:
    first = next((h.strip() for h in hosts if h.strip()), "")
    return first[:64] or "Stella agent listener"


def _random_serial() -> int:
    # 128 random bits; a zero serial is not allowed, so retry on that 2**-128 chance.
    while (serial := secrets.randbits(128)) == 0:
        pass
    return serial


def _serial_hex(serial: int) -> str:
    return f"{serial:032x}"


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _load_ec_key(pem: bytes, path: Path) -> ec.EllipticCurvePrivateKey:
    key = None
    with contextlib.suppress(ValueError, TypeError, UnsupportedAlgorithm):
        key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key
    msg = f"{path} is not an unencrypted EC private key; restore it from backup"
    raise RuntimeError(msg)


# --- files -----------------------------------------------------------------------------------


def _publish_once(path: Path, make: Callable[[], bytes], mode: int) -> bytes:
    """The content of `path`, written from `make()` first if the file does not exist yet.

    Race-safe across processes: the content goes to a temporary file which is then hard-linked
    to `path`. `os.link` fails when `path` already exists, so only the first writer's content
    is ever published, and everyone returns what is actually on disk.
    """
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    temp = _write_temp(path.parent, make(), mode)
    try:
        with contextlib.suppress(FileExistsError):
            _link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path.read_bytes()


def _link(source: Path, target: Path) -> None:
    """Publish `source` as `target`, failing with FileExistsError if `target` exists.

    A separate function so tests can lose the race on purpose."""
    os.link(source, target)
    _fsync_directory(target.parent)


def _replace(path: Path, data: bytes, mode: int) -> None:
    temp = _write_temp(path.parent, data, mode)
    try:
        temp.replace(path)
    finally:
        temp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _write_temp(directory: Path, data: bytes, mode: int) -> Path:
    """A complete, flushed file in `directory` (same filesystem, so link/rename work)."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".pem")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
