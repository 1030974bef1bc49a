"""DNS rebinding: a name that resolves to an allowed address when it is checked and to a
forbidden one when the connection is made. Provider and webhook clients connect only to an
address that passed the address policy (`framewatch.providers.urls.pinned_transport`), so the
second answer is never used. The resolver is the one part replaced here: the event loop's
`getaddrinfo`, the system's DNS, answers as a rebinding name server would."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from framewatch.providers.urls import ProviderAddressPolicy, pinned_transport

ALLOWED, FORBIDDEN = "127.0.0.1", "127.0.0.2"  # only the first is in the policy's allow-list


@asynccontextmanager
async def http_server(host: str, port: int, name: str, hits: list[str]) -> AsyncIterator[None]:
    """A one-line HTTP server on (host, port) that answers its name and records each request."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        hits.append(name)
        body = name.encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, host, port)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


def free_port_on_both() -> int:
    with socket.socket() as probe:
        probe.bind((ALLOWED, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`rebind.test` resolves to ALLOWED the first time, to FORBIDDEN every time after."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    answers: list[str] = []

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if (host.decode() if isinstance(host, bytes) else host) != "rebind.test":  # anyio: bytes
            return await real(host, port, *args, **kwargs)
        address = ALLOWED if not answers else FORBIDDEN
        answers.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return answers


def policy() -> ProviderAddressPolicy:
    return ProviderAddressPolicy(allowed_networks=(ipaddress.ip_network(f"{ALLOWED}/32"),))


async def test_the_connection_goes_to_the_address_that_was_checked(
    rebinding_dns: list[str],
) -> None:
    port = free_port_on_both()
    hits: list[str] = []
    checked = policy()
    async with (http_server(ALLOWED, port, "allowed", hits),
                http_server(FORBIDDEN, port, "forbidden", hits)):
        # What the clients did before: check the name, then let httpx resolve it again.
        unpinned = httpx.AsyncClient(trust_env=False,
                                     event_hooks={"request": [checked.httpx_hook]})
        async with unpinned:
            answer = await unpinned.get(f"http://rebind.test:{port}/")
        assert answer.text == "forbidden"  # the rebinding works against a check alone
        # Pinned: one resolution, checked, and the connection made to what was checked.
        rebinding_dns.clear()
        pinned = httpx.AsyncClient(trust_env=False, transport=pinned_transport(
            policy(), httpx.Limits(max_connections=5)))
        async with pinned:
            answers = [(await pinned.get(f"http://rebind.test:{port}/")).text for _ in range(3)]
        assert answers == ["allowed"] * 3
        assert hits == ["forbidden", "allowed", "allowed", "allowed"]


async def test_a_name_that_resolves_only_to_forbidden_addresses_is_not_connected_to(
    rebinding_dns: list[str],
) -> None:
    port = free_port_on_both()
    hits: list[str] = []
    rebinding_dns.append("answered once already")  # from now on: FORBIDDEN
    async with http_server(FORBIDDEN, port, "forbidden", hits):
        pinned = httpx.AsyncClient(trust_env=False, transport=pinned_transport(
            policy(), httpx.Limits(max_connections=5)))
        async with pinned:
            with pytest.raises(httpx.ConnectError, match=r"refused to connect to rebind\.test"):
                await pinned.get(f"http://rebind.test:{port}/")
    assert hits == []


async def test_tls_is_spoken_to_the_name_not_to_the_pinned_address(
    rebinding_dns: list[str],
) -> None:
    """The address is pinned, but TLS gets the name: the client's hello names `rebind.test`
    (server name indication), so the certificate is checked against the name."""
    port = free_port_on_both()
    hello = bytearray()

    async def capture(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello.extend(await reader.read(4096))
        writer.close()

    server = await asyncio.start_server(capture, ALLOWED, port)
    try:
        pinned = httpx.AsyncClient(trust_env=False, transport=pinned_transport(
            policy(), httpx.Limits(max_connections=5)))
        async with pinned:
            with pytest.raises(httpx.ConnectError):
                await pinned.get(f"https://rebind.test:{port}/")
    finally:
        server.close()
        await server.wait_closed()
    assert hello[:1] == b"\x16"  # a TLS handshake record
    assert b"rebind.test" in hello and ALLOWED.encode() not in hello
