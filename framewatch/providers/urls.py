"""Where providers may be: guarding against server-side request forgery (SSRF).

A provider's base URL is chosen by an admin, but the request goes out from the framewatch host —
possibly inside a cloud network whose metadata service hands out credentials. So:
- only `http` and `https`;
- link-local addresses (169.254.0.0/16, fe80::/10) and cloud metadata endpoints are always
  refused;
- private, loopback and unique-local addresses are refused unless
  `FRAMEWATCH_PROVIDER_ALLOW_PRIVATE_NETWORKS` is on (on-premise DeepStack or CompreFace);
- with `FRAMEWATCH_PROVIDER_ALLOWED_HOSTS` set, only those hosts (names or CIDR blocks).
Addresses are checked when a configuration is saved and again, after DNS resolution, before every
call, so a name that later resolves somewhere forbidden is refused too. And the connection itself
goes only to an address that was checked (`pinned_transport`): a name that answers one address
to the check and another to the connection (DNS rebinding) cannot lead a call elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from framewatch.providers.base import ProviderResponseError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data",
                            "metadata.azure.internal"})
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200",
))
RESOLVE_CACHE_SECONDS = 30.0


class ForbiddenProviderAddress(ValueError):
    """The URL points somewhere providers may not be."""


@dataclass
class ProviderAddressPolicy:
    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[Network, ...] = ()
    _resolved: dict[tuple[str, int], tuple[float, list[IPAddress]]] = field(
        default_factory=dict, repr=False)

    @classmethod
    def from_settings(cls, allow_private: bool, allowed: str) -> ProviderAddressPolicy:
        hosts, networks = set(), []
        for item in (part.strip().lower() for part in allowed.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.rstrip("."))
        return cls(allow_private, frozenset(hosts), tuple(networks))

    def check_url(self, url: str) -> tuple[str, int]:
        """The URL's host and port if its scheme and name are acceptable (no DNS lookup)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ForbiddenProviderAddress("a provider URL must be http:// or https:// with a host")
        host = parts.hostname.lower().rstrip(".")
        if host in METADATA_HOSTS:
            raise ForbiddenProviderAddress(f"{host} is a cloud metadata service")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ForbiddenProviderAddress("the URL's port is not a number 0-65535") from None
        literal = _literal_address(host)
        if literal is not None:
            self.check_address(literal, host)
        elif self.allowed_hosts and not self.allowed_networks and host not in self.allowed_hosts:
            # Names are checked here; with CIDR blocks, their addresses are, once resolved.
            raise ForbiddenProviderAddress(f"{host} is not in FRAMEWATCH_PROVIDER_ALLOWED_HOSTS")
        return host, port

    def check_address(self, address: IPAddress, host: str) -> None:
        # `::ffff:169.254.169.254` reaches 169.254.169.254: judge an IPv4-mapped address as the
        # IPv4 one (its IPv6 form is not link-local to `ipaddress`).
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address in METADATA_ADDRESSES:
            raise ForbiddenProviderAddress(f"{host} is a cloud metadata address")
        if address.is_link_local or address.is_multicast or address.is_unspecified:
            raise ForbiddenProviderAddress(f"{host} ({address}) is a link-local or special address")
        if self.allowed_hosts or self.allowed_networks:
            listed = host in self.allowed_hosts or any(
                address in net for net in self.allowed_networks)
            if not listed:
                raise ForbiddenProviderAddress(
                    f"{host} ({address}) is not in FRAMEWATCH_PROVIDER_ALLOWED_HOSTS")
            return
        private = address.is_private or address.is_loopback or address.is_reserved
        if private and not self.allow_private:
            raise ForbiddenProviderAddress(
                f"{host} ({address}) is a private address; set "
                "FRAMEWATCH_PROVIDER_ALLOW_PRIVATE_NETWORKS=true for on-premise providers")

    async def check_before_call(self, url: str) -> None:
        """Check the URL and every address its host resolves to now."""
        host, port = self.check_url(url)
        if _literal_address(host) is not None:
            return
        for address in await self._resolve(host, port):
            self.check_address(address, host)

    async def httpx_hook(self, request: httpx.Request) -> None:
        """httpx request hook: refuse the request (a non-retryable provider error)."""
        try:
            await self.check_before_call(str(request.url))
        except ForbiddenProviderAddress as exc:
            raise ProviderResponseError(f"refused to call {request.url.host}: {exc}") from None

    async def checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses `host` resolves to, each allowed by the policy (else refused)."""
        literal = _literal_address(host)
        addresses = [literal] if literal is not None else await self._resolve(host, port)
        for address in addresses:
            self.check_address(address, host)
        return addresses

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        now = time.monotonic()
        cached = self._resolved.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
        except OSError:
            return []  # the call itself will fail with a clear connection error
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        self._resolved[(host, port)] = (now + RESOLVE_CACHE_SECONDS, addresses)
        return addresses


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class PinnedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses the policy allows: the host name is resolved
    here, every address checked, and the connection made to one of those addresses. TLS still
    verifies the certificate against the name (httpcore passes it as the server name)."""

    def __init__(self, policy: ProviderAddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    # `timeout`: httpcore's interface, passed on to the real connect.
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._policy.checked_addresses(host, port)
        except ForbiddenProviderAddress as exc:  # httpx reports it as a connection error
            raise httpcore.ConnectError(f"refused to connect to {host}: {exc}") from None
        if not addresses:
            raise httpcore.ConnectError(f"{host} does not resolve")
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout, local_address,
                                                     socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("providers and webhooks are reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pinned_transport(policy: ProviderAddressPolicy,
                     limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """httpx's own transport, connecting through `PinnedNetworkBackend`; no proxies (a proxy
    would connect in our place, where the policy cannot see). httpx takes no network backend as
    a parameter, so its connection pool is replaced by the same pool with ours."""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=PinnedNetworkBackend(policy),
    )
    return transport
