"""Outbound HTTP to URLs that tenant administrators configure (OIDC discovery, JWKS, token endpoints, webhooks).

Only HTTPS to public addresses: a host that resolves to a loopback, private, link-local (cloud metadata),
shared, reserved or multicast address is refused, unless the platform allow-lists it (ATRIUM_OUTBOUND_ALLOWED_HOSTS:
host names, addresses or networks, e.g. an IdP on the internal network; the tests allow-list their local IdP). An
allow-listed host may also use plain HTTP. The connection goes to the address that was checked (the URL's host
stays in the Host header and TLS SNI), so DNS rebinding between the check and the request cannot redirect it;
redirects are not followed; each fetch has a timeout and a size cap. Refusals name the rule, never the resolved
address or the response (no port-scan oracle).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(Exception):
    """The URL may not be fetched, or its answer was unusable; `message` is safe to show to the administrator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _allowed(host: str, address: Address | None) -> bool:
    for entry in settings.ATRIUM_OUTBOUND_ALLOWED_HOSTS:
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == host.lower():
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return bool(address.is_global and not address.is_multicast)


def _resolve(host: str, port: int) -> list[Address]:
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        return [literal]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise OutboundRefused("the host name does not resolve") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def outbound_check(url: str) -> tuple[str, Address]:
    """(host, the address to connect to) when `url` may be fetched; OutboundRefused otherwise."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise OutboundRefused("only https:// URLs are accepted")
    if parts.username or parts.password:
        raise OutboundRefused("URLs with credentials are not accepted")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = _resolve(host, port)
    if not addresses:
        raise OutboundRefused("the host name does not resolve")
    host_allowed = _allowed(host, None)
    for address in addresses:
        if not (host_allowed or _allowed(host, address) or _public(address)):
            raise OutboundRefused("the host is on a private, loopback or link-local network, which Atrium does not "
                                  "call unless the platform allow-lists it (ATRIUM_OUTBOUND_ALLOWED_HOSTS)")
    if parts.scheme != "https" and not (host_allowed or all(_allowed(host, a) for a in addresses)):
        raise OutboundRefused("only https:// URLs are accepted")
    return host, addresses[0]


def outbound_get_json(url: str, *, verify: bool = True, timeout: float | None = None,
                      max_bytes: int | None = None) -> dict[str, Any]:
    """GET a JSON object from a tenant-configured URL under the rules above."""
    host, address = outbound_check(url)
    parts = urlsplit(url)
    pinned_host = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    netloc = f"{pinned_host}:{parts.port}" if parts.port else pinned_host
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    limit = max_bytes or settings.ATRIUM_OUTBOUND_MAX_BYTES
    headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": "application/json"}
    try:
        with httpx.Client(verify=verify, timeout=timeout or settings.ATRIUM_OUTBOUND_TIMEOUT_S,
                          follow_redirects=False, trust_env=False) as client, \
                client.stream("GET", pinned, headers=headers, extensions={"sni_hostname": host}) as response:
            if response.status_code != 200:
                raise OutboundRefused(f"the server answered HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > limit:
                    raise OutboundRefused(f"the answer is larger than {limit} bytes")
    except httpx.TimeoutException as exc:
        raise OutboundRefused("the server did not answer in time") from exc
    except httpx.HTTPError as exc:
        raise OutboundRefused("the server is unreachable") from exc
    try:
        document = json.loads(bytes(body))
    except ValueError as exc:
        raise OutboundRefused("the answer is not JSON") from exc
    if not isinstance(document, dict):
        raise OutboundRefused("the answer is not a JSON object")
    return document
