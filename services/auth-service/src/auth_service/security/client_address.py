"""Which client a request comes from, as the key the login and signup limits count it under.

The socket peer, unless the peer is one of the configured proxies (the ingress): then the rightmost
address of X-Forwarded-For that is not a trusted proxy, since each proxy appends the address it was
reached from and only the part the trusted proxies appended is true. The header is never read from
any other peer, so a client cannot name itself. uvicorn's ProxyHeadersMiddleware does the same walk,
but only under uvicorn (not granian), it rewrites the scope for every layer, and by default it trusts
any loopback peer; the server runs it off (server.py) and the limits ask here.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# An IPv6 client holds a whole /64 (a home or a cloud instance gets one), and can pick any address
# in it: keyed by the full address, each request could be a new client. Counted by its /64 instead.
IPV6_CLIENT_PREFIX = 64
UNKNOWN_CLIENT = "unknown"
# Parsing an address with ipaddress, matching it against the proxies and writing its key cost 8-13 us
# a request (an IPv4 peer; 28 us for IPv6; timeit on a busy host), on every signup, login, PATCH
# and DELETE through FastAPI; 2 us from these caches. A client sends many requests from one address.
# Bounded, least recently used out first: the addresses come from clients.
ADDRESS_CACHE_SIZE = 4096


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Addresses or CIDRs (host bits allowed: 10.1.2.3/8 is 10.0.0.0/8); ValueError names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR") from None
    return tuple(networks)


@functools.lru_cache(maxsize=ADDRESS_CACHE_SIZE)
def parse_address(value: str) -> IPAddress | None:
    """An address as proxies write it: bare, `1.2.3.4:port` or `[v6]:port`; None when it is none."""
    value = value.strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else value
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=ADDRESS_CACHE_SIZE)
def client_key(address: IPAddress) -> str:
    """The limits' key of a client: an IPv4 address, or an IPv6 address's /64."""
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


class ClientAddresses:
    """Resolves the client of a request from its peer and X-Forwarded-For, trusting only the proxies given."""

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self.trusted = parse_networks(trusted_proxies)
        self._trusted_verdicts = functools.lru_cache(maxsize=ADDRESS_CACHE_SIZE)(self._in_trusted_networks)

    def is_trusted(self, address: IPAddress) -> bool:
        return self._trusted_verdicts(address)

    def _in_trusted_networks(self, address: IPAddress) -> bool:
        return any(address in network for network in self.trusted)

    def resolve(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """The client key: of the peer, or, behind trusted proxies, of the rightmost untrusted forwarded hop."""
        nearest = parse_address(peer) if peer else None
        if nearest is None:
            return UNKNOWN_CLIENT
        if not self.is_trusted(nearest):
            return client_key(nearest)
        # Several X-Forwarded-For headers are one list, in order (RFC 9110, 5.3).
        hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:
                # Not an address: a trusted proxy passed the header on without appending to it. What is
                # left of it came from the client; the last address known good is the nearest one.
                break
            nearest = address
            if not self.is_trusted(address):
                break
        return client_key(nearest)
