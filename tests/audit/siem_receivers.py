"""Real SIEM receivers for the streaming tests, in the test process: a TCP/TLS syslog receiver (RFC 6587
octet-counting) and an HTTPS webhook receiver, plus a self-signed certificate made with `cryptography`."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BOM = b"\xef\xbb\xbf"


@dataclass
class Certificate:
    cert_pem: str
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


def self_signed(directory: Path) -> Certificate:
    """A certificate for 127.0.0.1 and localhost, signed by its own key (no CA anyone trusts)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "atrium-test-siem")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_file, key_file = directory / "siem-cert.pem", directory / "siem-key.pem"
    cert_file.write_text(cert_pem)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Certificate(cert_pem, cert_file, key_file)


@dataclass
class SyslogMessage:
    header: str  # "<PRI>1 TIMESTAMP HOST APP PROCID MSGID"
    structured: str
    document: dict[str, Any]


def parse_syslog(message: bytes) -> SyslogMessage:
    head, _, rest = message.partition(b"] ")
    header, _, structured = head.decode().partition(" [")
    assert rest.startswith(BOM), "MSG is UTF-8 with a BOM (RFC 5424 section 6.4)"
    return SyslogMessage(header=header, structured=f"[{structured}]", document=json.loads(rest[len(BOM):]))


class SyslogReceiver:
    """Accepts connections, reads octet-counted frames until the sender closes its side, then closes its own."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None, *, hold_open: threading.Event | None = None,
                 ) -> None:
        self.port, self.tls = port, tls
        self.hold_open = hold_open  # when given: after the sender's end, keep the connection until it is set
        self.messages: list[SyslogMessage] = []
        self.first_bytes: list[bytes] = []  # of each connection, before any TLS: a ClientHello starts with 0x16
        self.errors: list[str] = []
        self.lock = threading.Condition()
        self.server: socket.socket | None = None
        self.threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"syslog{'+tls' if self.tls else ''}://127.0.0.1:{self.port}"

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(8)
        self.server = server
        thread = threading.Thread(target=self._accept, args=(server,), daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self) -> None:
        if self.server is not None:
            with contextlib.suppress(OSError):
                self.server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            self.server.close()
            self.server = None
        for thread in self.threads:
            thread.join(timeout=10)
        self.threads = []

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            first = conn.recv(1, socket.MSG_PEEK)
            with self.lock:
                self.first_bytes.append(first)
            sock = self.tls.wrap_socket(conn, server_side=True) if self.tls else conn
            buffer = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                while b" " in buffer:
                    length_text, _, rest = buffer.partition(b" ")
                    length = int(length_text)
                    if len(rest) < length:
                        break
                    with self.lock:
                        self.messages.append(parse_syslog(rest[:length]))
                        self.lock.notify_all()
                    buffer = rest[length:]
            assert buffer == b"", "a frame was cut short"
            if self.hold_open is not None:
                self.hold_open.wait(timeout=60)
        except (OSError, ssl.SSLError, AssertionError, ValueError) as exc:
            with self.lock:
                self.errors.append(f"{exc.__class__.__name__}: {exc}")
        finally:
            conn.close()

    def wait_for(self, count: int, timeout: float = 60) -> list[SyslogMessage]:
        with self.lock:
            self.lock.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
            return list(self.messages)


@dataclass
class WebhookReceiver:
    """An HTTPS server recording each POST; `statuses` scripts the answers (then 200); `gate`, when set, holds each
    request until released (the test sees `arrived` first)."""

    certificate: Certificate
    secret: str
    statuses: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    signatures_ok: list[bool] = field(default_factory=list)
    gate: threading.Event | None = None
    arrived: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"https://127.0.0.1:{self.server.server_address[1]}/ingest"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stamp = self.headers.get("X-Atrium-Timestamp", "")
                expected = "sha256=" + hmac.new(receiver.secret.encode(), stamp.encode() + b"." + body,
                                                hashlib.sha256).hexdigest()
                receiver.bodies.append(json.loads(body))
                receiver.signatures_ok.append(hmac.compare_digest(expected,
                                                                  self.headers.get("X-Atrium-Signature", "")))
                receiver.arrived.set()
                if receiver.gate is not None:
                    receiver.gate.wait(timeout=60)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.socket = self.certificate.server_context().wrap_socket(server.socket, server_side=True)
        self.server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def ids(self) -> list[str]:
        return [entry["id"] for body in self.bodies for entry in body["entries"]]
