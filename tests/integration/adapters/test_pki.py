"""The agent CA: created once (even under concurrent starts), issues only what it decides."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stella.adapters import pki
from stella.adapters.pki import AgentCA, CertificateRejected, generate_agent_key_and_csr

DAY = timedelta(days=1)


def csr_for(key, name="agent", extensions=()):
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def test_created_once_and_reloaded_identically(tmp_path):
    ca = AgentCA.load_or_create(tmp_path / "ca")
    again = AgentCA.load_or_create(tmp_path / "ca")
    assert again.ca_cert_pem == ca.ca_cert_pem
    cert = x509.load_pem_x509_certificate(ca.ca_cert_pem.encode())
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (usage.key_cert_sign, usage.crl_sign, usage.digital_signature) == (True, True, False)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=3650) < lifetime < timedelta(days=3660)
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["agent-ca.crt", "agent-ca.key"]


def test_key_file_is_private(tmp_path):
    AgentCA.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / "agent-ca.key").stat().st_mode) == 0o600


def test_a_missing_certificate_is_recreated_for_the_existing_key(tmp_path):
    """A crash between writing the key and the certificate must not strand the CA key."""
    first = AgentCA.load_or_create(tmp_path)
    key_before = (tmp_path / "agent-ca.key").read_bytes()
    (tmp_path / "agent-ca.crt").unlink()
    second = AgentCA.load_or_create(tmp_path)
    assert (tmp_path / "agent-ca.key").read_bytes() == key_before
    issued = second.issue_client_certificate(generate_agent_key_and_csr("a")[1], uuid.uuid4(), DAY)
    first_cert = x509.load_pem_x509_certificate(first.ca_cert_pem.encode())
    # Same key, so certificates issued by the repaired CA still verify against the old one.
    x509.load_pem_x509_certificate(issued.cert_pem.encode()).verify_directly_issued_by(first_cert)


def test_losing_the_race_reads_the_winners_ca(tmp_path, monkeypatch):
    """Another process publishes its key and certificate between our check and our link."""
    real_link = pki._link
    winner: list[AgentCA] = []

    def link_after_rival(source, target):
        if not winner:
            monkeypatch.setattr(pki, "_link", real_link)
            winner.append(AgentCA.load_or_create(tmp_path))
            monkeypatch.setattr(pki, "_link", link_after_rival)
        real_link(source, target)

    monkeypatch.setattr(pki, "_link", link_after_rival)
    loser = AgentCA.load_or_create(tmp_path)
    assert loser.ca_cert_pem == winner[0].ca_cert_pem
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_concurrent_threads_end_with_one_ca(tmp_path):
    barrier = threading.Barrier(8)
    results: list[str] = []

    def start():
        barrier.wait()
        results.append(AgentCA.load_or_create(tmp_path / "ca").ca_cert_pem)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert len(set(results)) == 1
    assert results[0] == AgentCA.load_or_create(tmp_path / "ca").ca_cert_pem


def test_concurrent_processes_end_with_one_ca(tmp_path):
    """Processes wait for a go file, then all create the CA at the same moment."""
    go = tmp_path / "go"
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from stella.adapters.pki import AgentCA
        go = Path(sys.argv[1])
        while not go.exists():
            time.sleep(0.001)
        print(AgentCA.load_or_create(Path(sys.argv[2])).ca_cert_pem, end="")
        """
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(go), str(tmp_path / "ca")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    time.sleep(1.0)  # let every interpreter import cryptography and start polling
    go.touch()
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        outputs.append(out)
    assert len(set(outputs)) == 1
    assert outputs[0] == (tmp_path / "ca" / "agent-ca.crt").read_text()


def test_issued_certificate_chains_to_the_ca_and_names_the_agent_only(tmp_path):
    ca = AgentCA.load_or_create(tmp_path)
    agent_id = uuid.uuid4()
    other = uuid.uuid4()
    key = ec.generate_private_key(ec.SECP256R1())
    # The CSR asks for a different name, another agent's URI and CA rights: all ignored.
    csr = csr_for(
        key,
        name="admin",
        extensions=[
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"urn:stella:agent:{other}")]
            ),
            x509.BasicConstraints(ca=True, path_length=None),
        ],
    )
    issued = ca.issue_client_certificate(csr, agent_id, timedelta(days=30))

    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    ca_cert = x509.load_pem_x509_certificate(ca.ca_cert_pem.encode())
    cert.verify_directly_issued_by(ca_cert)
    assert cert.public_key() == key.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == str(agent_id)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"urn:stella:agent:{agent_id}"
    ]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert issued.serial == f"{cert.serial_number:032x}"
    assert issued.fingerprint == cert.fingerprint(hashes.SHA256()).hex()
    assert issued.not_after == cert.not_valid_after_utc
    assert timedelta(days=29) < issued.not_after - datetime.now(UTC) <= timedelta(days=30)

    identity = ca.identity(cert.public_bytes(serialization.Encoding.DER))
    assert (identity.agent_id, identity.serial, identity.fingerprint) == (
        agent_id,
        issued.serial,
        issued.fingerprint,
    )


def test_serials_are_random(tmp_path):
    ca = AgentCA.load_or_create(tmp_path)
    csr = generate_agent_key_and_csr("a")[1]
    serials = {ca.issue_client_certificate(csr, uuid.uuid4(), DAY).serial for _ in range(5)}
    assert len(serials) == 5


@pytest.mark.parametrize(
    "key",
    [ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()],
    ids=["p384", "ed25519"],
)
def test_other_accepted_key_types(tmp_path, key):
    ca = AgentCA.load_or_create(tmp_path)
    issued = ca.issue_client_certificate(csr_for(key), uuid.uuid4(), DAY)
    assert x509.load_pem_x509_certificate(issued.cert_pem.encode()).public_key() == key.public_key()


@pytest.mark.parametrize(
    ("csr", "message"),
    [
        ("garbage", "certificate signing request is not valid PEM"),
        ("", "certificate signing request is not valid PEM"),
        (
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            "certificate signing request is not valid PEM",
        ),
    ],
)
def test_unparseable_csr_is_rejected_readably(tmp_path, csr, message):
    ca = AgentCA.load_or_create(tmp_path)
    with pytest.raises(CertificateRejected) as info:
        ca.issue_client_certificate(csr, uuid.uuid4(), DAY)
    assert str(info.value) == message


def test_csr_with_an_rsa_key_is_rejected(tmp_path):
    ca = AgentCA.load_or_create(tmp_path)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(CertificateRejected, match=r"unsupported key type .*RSA"):
        ca.issue_client_certificate(csr_for(key), uuid.uuid4(), DAY)


def test_csr_with_a_curve_outside_the_list_is_rejected(tmp_path):
    ca = AgentCA.load_or_create(tmp_path)
    key = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(CertificateRejected, match=r"unsupported key type .*secp521r1"):
        ca.issue_client_certificate(csr_for(key), uuid.uuid4(), DAY)


def test_csr_with_a_tampered_signature_is_rejected(tmp_path):
    ca = AgentCA.load_or_create(tmp_path)
    pem = generate_agent_key_and_csr("agent")[1]
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the ECDSA signature's s value: still parses, no longer verifies
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(CertificateRejected) as info:
        ca.issue_client_certificate(tampered, uuid.uuid4(), DAY)
    assert str(info.value) == "certificate signing request signature does not verify"


def der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        encoded = bytes([length])
    else:
        size = (length.bit_length() + 7) // 8
        encoded = bytes([0x80 | size]) + length.to_bytes(size, "big")
    return bytes([tag]) + encoded + content


ECDSA_WITH_SHA256 = der(0x30, der(0x06, bytes.fromhex("2a8648ce3d040302")))


def test_csr_signed_by_another_key_is_rejected(tmp_path):
    """The signature must come from the key being certified (proof of possession)."""
    ca = AgentCA.load_or_create(tmp_path)
    victim = x509.load_pem_x509_csr(generate_agent_key_and_csr("victim")[1].encode())
    attacker = x509.load_pem_x509_csr(generate_agent_key_and_csr("attacker")[1].encode())
    spliced = der(
        0x30,
        victim.tbs_certrequest_bytes + ECDSA_WITH_SHA256 + der(0x03, b"\x00" + attacker.signature),
    )
    pem = x509.load_der_x509_csr(spliced).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(CertificateRejected, match="does not verify"):
        ca.issue_client_certificate(pem, uuid.uuid4(), DAY)


def test_identity_rejects_foreign_and_nameless_certificates(tmp_path):
    ca = AgentCA.load_or_create(tmp_path / "ours")
    other = AgentCA.load_or_create(tmp_path / "theirs")
    csr = generate_agent_key_and_csr("a")[1]
    foreign = other.issue_client_certificate(csr, uuid.uuid4(), DAY)
    der = x509.load_pem_x509_certificate(foreign.cert_pem.encode()).public_bytes(
        serialization.Encoding.DER
    )
    with pytest.raises(CertificateRejected, match="not issued by this orchestrator"):
        ca.identity(der)
    with pytest.raises(CertificateRejected, match="not valid DER"):
        ca.identity(b"\x30\x03junk")
    # The listener's server certificate is ours but names no agent.
    cert_file, _ = ca.server_certificate_files(tmp_path / "listener", ["agents.example"])
    server_der = x509.load_pem_x509_certificate(cert_file.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    with pytest.raises(CertificateRejected, match="does not name exactly one agent"):
        ca.identity(server_der)


def test_server_certificate_is_reused_then_regenerated_for_new_hosts(tmp_path):
    ca = AgentCA.load_or_create(tmp_path / "ca")
    listener = tmp_path / "listener"
    cert_file, key_file = ca.server_certificate_files(listener, ["10.0.0.5", "Agents.Example"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = cert_file.read_bytes()
    cert = x509.load_pem_x509_certificate(first)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.ca_cert_pem.encode()))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"10.0.0.5", "127.0.0.1"}
    assert set(san.get_values_for_type(x509.DNSName)) == {"agents.example", "localhost"}
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()

    # Same hosts (order and the implicit defaults do not matter): the files are kept.
    again = ca.server_certificate_files(listener, ["agents.example", "localhost", "10.0.0.5"])
    assert again == (cert_file, key_file)
    assert cert_file.read_bytes() == first

    # A new host: new certificate and key.
    ca.server_certificate_files(listener, ["10.0.0.5", "agents.example", "10.0.0.6"])
    regenerated = cert_file.read_bytes()
    assert regenerated != first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    new_cert = x509.load_pem_x509_certificate(regenerated)
    new_san = new_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.0.0.6" in {str(ip) for ip in new_san.get_values_for_type(x509.IPAddress)}
    new_key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert new_key.public_key() == new_cert.public_key()


def test_server_certificate_is_renewed_near_expiry_and_for_a_new_ca(tmp_path):
    ca = AgentCA.load_or_create(tmp_path / "ca")
    listener = tmp_path / "listener"
    cert_file, _ = ca.server_certificate_files(listener, ["agents.example"])
    first = cert_file.read_bytes()
    # 340 days on, the 365-day certificate has less than 30 days left.
    later = datetime.now(UTC) + timedelta(days=340)
    ca.server_certificate_files(listener, ["agents.example"], now=later)
    assert cert_file.read_bytes() != first
    renewed = cert_file.read_bytes()
    # A different CA does not accept the files signed by the first one.
    other = AgentCA.load_or_create(tmp_path / "other-ca")
    other.server_certificate_files(listener, ["agents.example"])
    assert cert_file.read_bytes() != renewed


def test_agent_helpers(tmp_path):
    key_pem, csr_pem = generate_agent_key_and_csr("build-host-7")
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    assert csr.is_signature_valid
    assert csr.public_key() == key.public_key()
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "build-host-7"

    key_file = tmp_path / "agent" / "agent.key"
    pki.new_agent_key(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    with pytest.raises(FileExistsError):
        pki.new_agent_key(key_file)
    assert key_file.read_bytes() == loaded.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert sorted(os.listdir(key_file.parent)) == ["agent.key"]


def test_validity_must_be_positive(tmp_path):
    ca = AgentCA.load_or_create(tmp_path)
    with pytest.raises(ValueError, match="positive"):
        ca.issue_client_certificate(generate_agent_key_and_csr("a")[1], uuid.uuid4(), -DAY)
