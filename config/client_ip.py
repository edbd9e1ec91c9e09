"""The client's IP address, told truthfully: X-Forwarded-For is believed only from a configured trusted proxy.

Anyone can send an X-Forwarded-For header. It means something only when the direct peer (REMOTE_ADDR, which
gunicorn takes from the TCP connection) is one of our own proxies (settings.ATRIUM_TRUSTED_PROXIES, CIDRs). Then
the header is read from the right, where our proxies appended what they saw, skipping every trusted proxy: the
first address that is not one of ours is the client. Whatever a client wrote further left is ignored. The same
rule as django-ipware's trusted-proxy mode, with networks instead of address prefixes (docs/decisions.md).
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[Network, ...]:
    networks: list[Network] = []
    for item in spec:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(f"ATRIUM_TRUSTED_PROXIES: {item!r} is not an IP address or CIDR") from exc
    return tuple(networks)


def _spec() -> tuple[str, ...]:
    return tuple(str(s) for s in getattr(settings, "ATRIUM_TRUSTED_PROXIES", []) if str(s).strip())


def trusted_proxies() -> tuple[Network, ...]:
    return _networks(_spec())


def _address(value: str) -> Address | None:
    """An address from a header hop: '203.0.113.7', '203.0.113.7:5123', '2001:db8::1', '[2001:db8::1]:443'."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_ip(request: Any) -> str:
    """The client's address for `request` ('' if unknown)."""
    meta = getattr(request, "META", None) or {}
    peer_text = str(meta.get("REMOTE_ADDR", "") or "")
    forwarded_for = str(meta.get("HTTP_X_FORWARDED_FOR", ""))
    if len(forwarded_for) > _REMEMBERED_HEADER:  # a client's long header is not kept in memory
        return _client_ip.__wrapped__(peer_text, forwarded_for, _spec())
    return _client_ip(peer_text, forwarded_for, _spec())


_REMEMBERED_HEADER = 512


@functools.lru_cache(maxsize=1024)
def _client_ip(peer_text: str, forwarded_for: str, spec: tuple[str, ...]) -> str:
    """client_ip's answer, a function of these three strings only: remembered, as every call of a client (and
    every audit entry of a call) would otherwise parse the same addresses again."""
    peer = _address(peer_text)
    if peer is None:
        return peer_text
    networks = _networks(spec)
    if not networks or not _trusted(peer, networks):
        return str(peer)  # not from one of our proxies: its X-Forwarded-For is whatever the client wanted
    hops = [hop for hop in forwarded_for.split(",") if hop.strip()]
    nearest = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # garbage a client wrote: the last hop our proxies vouch for is the best we know
        if not _trusted(address, networks):
            return str(address)
        nearest = address
    return str(nearest)
