"""Delivery of one batch to one SIEM, and what counts as its acknowledgement.

- syslog (`syslog://` plain TCP, `syslog+tls://` TLS): one connection per batch, octet-counted RFC 5424 messages
  (RFC 6587), then our side of the connection is closed and the batch counts as acknowledged only when the receiver
  closes its side in turn (it read to the end of our stream). A refused connection, a reset, a timeout or a TLS
  failure is a DeliveryFailed; TLS never falls back to plain TCP.
- webhook (`https://`): one JSON POST per batch, signed; 2xx acknowledges. 5xx, 408, 429, timeouts and connection
  errors are retried with exponential backoff; any other answer fails the batch at once.

Addresses configured in the database pass config.outbound's rules (public addresses unless allow-listed) and the
connection goes to the address that was checked (TLS SNI and the certificate check use the host name). The
operator's destination (settings) is trusted and only resolved. Errors carry no entry content.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

from audit.siem import wire
from config.outbound import OutboundRefused, outbound_check

SCHEMES = {"https": "webhook", "syslog": "syslog", "syslog+tcp": "syslog", "syslog+tls": "syslog"}
RETRY_STATUSES = {408, 429}


class DeliveryFailed(Exception):
    """The batch was not acknowledged; `message` names the cause (never an entry's content) and is safe to log."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Target:
    """Where and how to deliver: a destination row or the operator's settings, resolved."""

    url: str
    secret: str = field(default="", repr=False)  # never in a traceback's or an assertion's rendering
    ca_pem: str = ""
    ca_file: str = ""
    verify_tls: bool = True
    trusted: bool = False  # the operator's own destination: not held to the public-address rule

    @property
    def kind(self) -> str:
        return SCHEMES[urlsplit(self.url).scheme]


def url_problem(url: str) -> str | None:
    """Why `url` is not a usable destination address (form validation), or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in SCHEMES:
        return "use https://…, syslog+tls://host:port or syslog://host:port"
    if not parts.hostname or parts.username or parts.password:
        return "the URL needs a host and no user name or password"
    if parts.scheme != "https" and (port is None or parts.path not in ("", "/") or parts.query):
        return "a syslog address is host:port, nothing else"
    return None


def tls_context(target: Target) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=target.ca_file or None, cadata=target.ca_pem or None)
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise DeliveryFailed("the CA bundle cannot be read") from exc
    if not target.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _address(target: Target, host: str, port: int, tls: bool) -> str:
    """The address to connect to: checked by config.outbound (pinned), or resolved for the trusted operator's."""
    if target.trusted:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise DeliveryFailed("the host name does not resolve") from exc
        return str(infos[0][4][0])
    try:
        _host, address = outbound_check(f"{'https' if tls else 'http'}://{host}:{port}/")
    except OutboundRefused as exc:
        raise DeliveryFailed(exc.message) from exc
    return str(address)


def syslog_send(target: Target, entries: list[wire.WireEntry]) -> None:
    parts = urlsplit(target.url)
    host, port, tls = parts.hostname or "", parts.port or 0, parts.scheme == "syslog+tls"
    hostname = settings.ATRIUM_SIEM_SYSLOG_HOSTNAME or socket.gethostname()
    payload = b"".join(wire.octet_counted(wire.syslog_message(entry, hostname=hostname,
                                                              facility=settings.ATRIUM_SIEM_SYSLOG_FACILITY))
                       for entry in entries)
    timeout = float(settings.ATRIUM_SIEM_TIMEOUT_S)
    address = _address(target, host, port, tls)
    try:
        raw = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        raise DeliveryFailed(f"cannot connect ({exc.__class__.__name__})") from exc
    try:
        if tls:
            try:
                sock: socket.socket = tls_context(target).wrap_socket(raw, server_hostname=host)
            except ssl.SSLCertVerificationError as exc:
                raise DeliveryFailed(f"TLS certificate not accepted ({exc.verify_message})") from exc
            except (ssl.SSLError, OSError) as exc:
                raise DeliveryFailed(f"TLS handshake failed ({exc.__class__.__name__})") from exc
        else:
            sock = raw
        try:
            sock.sendall(payload)
            # Half-close, then wait for the receiver to close in turn: it has read everything we sent.
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + timeout
            while sock.recv(4096):
                if time.monotonic() > deadline:
                    raise DeliveryFailed("the receiver did not close the connection after the batch")
        except TimeoutError as exc:
            raise DeliveryFailed("the receiver did not acknowledge the batch in time") from exc
        except OSError as exc:
            raise DeliveryFailed(f"the connection failed during the batch ({exc.__class__.__name__})") from exc
    finally:
        raw.close()


def _certificate_refusal(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    for _ in range(8):  # httpx wraps httpcore's error, which wraps ssl's
        if seen is None or isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def webhook_send(target: Target, chain: str, entries: list[wire.WireEntry]) -> None:
    parts = urlsplit(target.url)
    host = parts.hostname or ""
    address = _address(target, host, parts.port or 443, True)
    pinned_host = f"[{address}]" if isinstance(ipaddress.ip_address(address), ipaddress.IPv6Address) else address
    netloc = f"{pinned_host}:{parts.port}" if parts.port else pinned_host
    pinned = urlunsplit(("https", netloc, parts.path or "/", parts.query, ""))
    body = wire.webhook_body(chain, entries)
    retries = int(settings.ATRIUM_SIEM_HTTP_RETRIES)
    backoff = float(settings.ATRIUM_SIEM_RETRY_BACKOFF_S)
    problem = ""
    with httpx.Client(verify=tls_context(target), timeout=float(settings.ATRIUM_SIEM_TIMEOUT_S),
                      follow_redirects=False, trust_env=False) as client:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(backoff * 2 ** (attempt - 1))  # backoff between retries, not synchronisation
            stamp = int(time.time())
            headers = {"Host": parts.netloc, "Content-Type": "application/json",
                       "User-Agent": "Atrium-SIEM/1", "X-Atrium-Timestamp": str(stamp),
                       "X-Atrium-Batch": f"{chain}/{entries[0].seq}-{entries[-1].seq}"}
            if target.secret:
                headers["X-Atrium-Signature"] = wire.webhook_signature(target.secret, stamp, body)
            try:
                # Streamed and never read: the answer's status is all that counts, however large its body.
                with client.stream("POST", pinned, content=body, headers=headers,
                                   extensions={"sni_hostname": host}) as response:
                    status = response.status_code
            except httpx.ConnectError as exc:
                refused = _certificate_refusal(exc)
                if refused is not None:  # a configuration problem: retrying cannot help
                    raise DeliveryFailed(f"TLS certificate not accepted ({refused.verify_message})") from exc
                problem = "cannot connect"
                continue
            except httpx.TimeoutException:
                problem = "no answer in time"
                continue
            except httpx.HTTPError as exc:
                problem = f"the request failed ({exc.__class__.__name__})"
                continue
            if 200 <= status < 300:
                return
            problem = f"the receiver answered HTTP {status}"
            if status < 500 and status not in RETRY_STATUSES:
                break
    raise DeliveryFailed(problem)


def deliver(target: Target, chain: str, entries: list[wire.WireEntry]) -> None:
    """Send one batch (in sequence order); returns once acknowledged, DeliveryFailed otherwise."""
    if target.kind == "webhook":
        webhook_send(target, chain, entries)
    else:
        syslog_send(target, entries)
