"""A RabbitMQ node of the tests' own that speaks only TLS, with a private CA and x509 logins.

The shared broker on 5672 is never touched: this node has its own name, ports, data, log and
plugin files, all under one directory that is removed afterwards. It listens for TLS only on
127.0.0.1, verifies client certificates that a client presents (one is not required, so a
password login over TLS works too), and offers SASL EXTERNAL, which takes the login from the
certificate's common name. Its one user logs in either way: by password, or by the client
certificate, whose common name is that user's name.

The certificates are made here, per run: a CA, a server certificate for 127.0.0.1 and localhost,
a client certificate, and a second CA that signed nothing here (verifying against it fails).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.ports import free_port

USER = "recon-tls"  # the password user, and the client certificate's common name
STARTUP_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 60
_VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class Pki:
    """The PEM files of one run: CA, server and client certificates and keys, and a stray CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


@dataclass(frozen=True)
class TlsNode:
    """A running TLS-only node: where it listens and how to log in."""

    name: str
    port: int
    pki: Pki
    password: str = field(repr=False)

    def url(self, *, login: bool = True, **options: str) -> str:
        """``amqps://`` to this node with ``options`` as the query; ``login``: user and password."""
        credentials = f"{quote(USER, safe='')}:{quote(self.password, safe='')}@" if login else ""
        query = f"?{urlencode(options)}" if options else ""
        return f"amqps://{credentials}127.0.0.1:{self.port}/{query}"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _VALIDITY)
        .not_valid_after(now + _VALIDITY)
    )


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    cert = (
        _builder(common_name, _name(common_name), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
    return cert, key


def _leaf(
    common_name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    usage: x509.ObjectIdentifier,
    alt_names: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = _key()
    builder = (
        _builder(common_name, ca_cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(directory: Path) -> Pki:
    """A fresh CA with a server (127.0.0.1, localhost) and a client (``USER``) certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("recon tests TLS CA")
    server = _leaf(
        "127.0.0.1",
        ca,
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client = _leaf(USER, ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    other_ca, _ = _ca("recon tests stray CA")
    return Pki(
        ca=_write_cert(ca[0], directory / "ca.pem"),
        server_cert=_write_cert(server[0], directory / "server.pem"),
        server_key=_write_key(server[1], directory / "server.key"),
        client_cert=_write_cert(client[0], directory / "client.pem"),
        client_key=_write_key(client[1], directory / "client.key"),
        other_ca=_write_cert(other_ca, directory / "other-ca.pem"),
    )


def rabbitmq_script(name: str) -> Path | None:
    """The real ``rabbitmq-server`` / ``rabbitmqctl`` script, or None when not installed.

    Debian's commands on the PATH are a wrapper that switches to the ``rabbitmq`` user and the
    system node's directory; the script it wraps lies next to it, and running that directly
    keeps this node's environment (its HOME, so its own Erlang cookie) intact.
    """
    found = shutil.which(name)
    if found is None:
        return None
    beside = Path(found).resolve().parent / name
    return beside if beside.is_file() else Path(found)


def _config(node_port: int, pki: Pki, password: str) -> str:
    return "\n".join(
        [
            "listeners.tcp = none",
            f"listeners.ssl.default = 127.0.0.1:{node_port}",
            f"ssl_options.cacertfile = {pki.ca}",
            f"ssl_options.certfile = {pki.server_cert}",
            f"ssl_options.keyfile = {pki.server_key}",
            "ssl_options.verify = verify_peer",
            "ssl_options.fail_if_no_peer_cert = false",
            "auth_mechanisms.1 = PLAIN",
            "auth_mechanisms.2 = EXTERNAL",
            "ssl_cert_login_from = common_name",
            f"default_user = {USER}",
            f"default_pass = {password}",
            "log.console = false",
            "log.file.level = info",
            "",
        ]
    )


def _environment(directory: Path, node: str, dist_port: int) -> dict[str, str]:
    """The node's and its rabbitmqctl's environment: nothing read from the system node's files."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RABBITMQ_", "ERL_")) and key not in {"HOME", "CONF_ENV_FILE"}
    }
    return {
        **inherited,
        "HOME": str(directory),  # the Erlang cookie the node and rabbitmqctl share
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(directory / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_PID_FILE": str(directory / "rabbitmq.pid"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }


def _ctl(ctl: Path, env: dict[str, str], node: str, *args: str, timeout: float) -> None:
    result = subprocess.run(
        [str(ctl), "-n", node, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stdout}{result.stderr}")


def _log_tail(directory: Path) -> str:
    lines: list[str] = []
    for path in sorted([directory / "server.out", *(directory / "log").glob("*.log")]):
        with suppress(OSError):
            lines += path.read_text(errors="replace").splitlines()[-30:]
    return "\n".join(lines)


def _end(process: subprocess.Popen[bytes]) -> None:
    """Wait for the node to exit; else stop, then kill, the process group it was started in."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
            return
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, sig)
    process.wait()


@contextmanager
def running_tls_node(directory: Path) -> Iterator[TlsNode]:
    """Start the node in ``directory``, yield it once booted, stop it and remove ``directory``."""
    server, ctl = rabbitmq_script("rabbitmq-server"), rabbitmq_script("rabbitmqctl")
    if server is None or ctl is None:
        raise FileNotFoundError("rabbitmq-server and rabbitmqctl are not installed")
    directory.mkdir(parents=True, exist_ok=True)
    pki = make_pki(directory / "pki")
    node = f"recon-tls-{uuid.uuid4().hex[:8]}@localhost"
    port, password = free_port(), uuid.uuid4().hex
    (directory / "rabbitmq.conf").write_text(_config(port, pki, password))
    (directory / "rabbitmq-env.conf").write_text("")
    (directory / "enabled_plugins").write_text("[rabbitmq_auth_mechanism_ssl].\n")
    env = _environment(directory, node, free_port())
    pid_file = Path(env["RABBITMQ_PID_FILE"])
    started = time.monotonic()
    with (directory / "server.out").open("wb") as out:
        process = subprocess.Popen(
            [str(server)],
            env=env,
            cwd=directory,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        try:
            # ``wait`` (unlike ``await_startup``) also waits for the node to reach Erlang
            # distribution, which takes a moment after the process starts.
            _ctl(ctl, env, node, "wait", str(pid_file), timeout=STARTUP_TIMEOUT_SECONDS)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            log = _log_tail(directory)
            raise RuntimeError(f"the TLS node did not start: {exc}\n{log}") from exc
        print(f"\nTLS RabbitMQ node {node} started in {time.monotonic() - started:.1f} s")
        yield TlsNode(node, port, pki, password)
    finally:
        with suppress(RuntimeError, subprocess.TimeoutExpired):
            _ctl(ctl, env, node, "stop", timeout=STOP_TIMEOUT_SECONDS)
        _end(process)
        shutil.rmtree(directory, ignore_errors=True)
