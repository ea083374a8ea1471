"""SSRF guard for node endpoints: the marketplace will send requests to these URLs on a client's behalf.

A URL is accepted only if it is plain http(s), names no credentials, spells any IP address canonically, and every
address its host resolves to is public. With ALLOW_PRIVATE_NODE_ENDPOINTS (development, tests) loopback and
private ranges are allowed, but link-local (cloud metadata), multicast and unspecified addresses never are.
"""

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from llm_models.errors import UnsafeEndpoint

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services that sit outside link-local on some clouds.
_METADATA = {ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")}
# RFC 8215's local-use NAT64 prefix may embed any IPv4 address (metadata included) in a network-specific way.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
# Anything made only of digits, dots and hex markers is an IP literal in some spelling (0x7f.1, 2130706433, 0177.0.0.1).
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]*))*\.?$", re.IGNORECASE)


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to. Kept separate so tests can stand in for DNS, which is outside our system."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _effective(ip: IPAddress) -> IPAddress:
    """IPv6 addresses that carry an IPv4 address (mapped, NAT64, 6to4, IPv4-compatible) are judged as that address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return ip.ipv4_mapped
        if ip.sixtofour:
            return ip.sixtofour
        if ip in ipaddress.ip_network("64:ff9b::/96") or (ip in ipaddress.ip_network("::/96") and int(ip) > 1):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_problem(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why this address may not be a node endpoint, or None if it may."""
    ip = _effective(ip)
    if ip.is_unspecified:
        return "an unspecified address (0.0.0.0 or ::)"
    if ip.is_link_local or ip in _METADATA:
        return "a link-local or cloud metadata address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in _LOCAL_NAT64:
        return "a local-use NAT64 address"
    if ip.is_global:
        return None
    if allow_private and (ip.is_loopback or ip.is_private or ip in ipaddress.ip_network("100.64.0.0/10")):
        return None
    return "a loopback, private or reserved address"


def check_node_endpoint(url: str, *, allow_private: bool) -> str:
    """Return the URL, normalised without a trailing slash, or raise UnsafeEndpoint saying why not."""
    if any(c.isspace() or not c.isprintable() for c in url.strip()):
        raise UnsafeEndpoint("Not a valid URL: it contains spaces or control characters.")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeEndpoint(f"Not a valid URL: {exc}.") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeEndpoint("The endpoint must be an http:// or https:// URL.")
    if "@" in parts.netloc or parts.username or parts.password:
        raise UnsafeEndpoint("The endpoint URL must not contain credentials; send them as api_key.")
    if parts.query or parts.fragment:
        raise UnsafeEndpoint("The endpoint URL must be a base URL without a query or fragment.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeEndpoint("The endpoint URL has no host.")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
        if _NUMERIC_HOST.match(host):
            raise UnsafeEndpoint("Write an IP address in dotted-decimal form; other spellings are refused.") from None
    port = port or (443 if parts.scheme == "https" else 80)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = resolve_host(host, port)
        except (OSError, UnicodeError) as exc:
            raise UnsafeEndpoint(f"The endpoint host {host!r} does not resolve.") from exc
        if not addresses:
            raise UnsafeEndpoint(f"The endpoint host {host!r} does not resolve.")
    for ip in addresses:
        problem = address_problem(ip, allow_private=allow_private)
        if problem:
            raise UnsafeEndpoint(f"The endpoint resolves to {problem}, which nodes may not use.")
    return url.strip().rstrip("/")
