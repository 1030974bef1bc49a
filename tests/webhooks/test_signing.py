"""The signature as a receiver checks it: a real HTTP server on 127.0.0.1 that verifies every
POST with nothing but the standard library — the snippet of docs/webhooks.md — and refuses
(401) what does not verify."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from framewatch.webhooks.signing import sign, verify
from tests.support.servers import serve_app
from tests.webhooks.support import create_webhook, send, settled, webhook_api


def verify_signature(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
    """docs/webhooks.md's receiver, word for word."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False  # too old (or from the future): a replay
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


class CheckingReceiver:
    """Accepts only what verifies with `secret`; keeps the bodies it accepted."""

    def __init__(self) -> None:
        self.secret = ""
        self.accepted: list[bytes] = []
        self.refused = 0

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> JSONResponse:
        body = await request.body()
        header = request.headers.get("X-Framewatch-Signature", "")
        if not verify_signature(self.secret, body, header):
            self.refused += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        self.accepted.append(body)
        return JSONResponse({"ok": True})


async def test_a_receiver_verifies_every_delivery_with_the_standard_library(
    tmp_path: Path, sqlite_url: str
) -> None:
    receiver = CheckingReceiver()
    with serve_app(receiver.app()) as base:
        async with webhook_api(tmp_path, sqlite_url) as api:
            right = await create_webhook(api, f"{base}/hook")
            receiver.secret = right["secret"]
            wrong = await create_webhook(api, f"{base}/hook",
                                         secret="not-the-receivers-secret")
            await send(api, "gate", 1)
            (good,) = await settled(api, right["id"], 1)
            (bad,) = await settled(api, wrong["id"], 1)
    assert good["status"] == "delivered" and good["last_status_code"] == 200
    # The receiver's 401 is a refusal: dead at once, not retried.
    assert (bad["status"], bad["attempts"], bad["last_status_code"]) == ("dead", 1, 401)
    assert receiver.refused == 1 and len(receiver.accepted) == 1
    assert b'"type":"detection"' in receiver.accepted[0]


def test_verify_refuses_tampering_another_secret_and_old_timestamps() -> None:
    body = b'{"type":"ping"}'
    now = int(time.time())
    header = sign("whsec_one", body, now)
    assert header.startswith(f"t={now},v1=") and len(header.split("v1=")[1]) == 64
    assert verify("whsec_one", body, header) and verify_signature("whsec_one", body, header)
    assert not verify("whsec_one", body + b" ", header)
    assert not verify("whsec_two", body, header)
    old = sign("whsec_one", body, now - 301)
    assert not verify("whsec_one", body, old) and not verify_signature("whsec_one", body, old)
    assert verify("whsec_one", body, old, tolerance=600)
    # The timestamp is signed too: moving it breaks the signature.
    moved = header.replace(f"t={now}", f"t={now + 1}")
    assert not verify("whsec_one", body, moved)
    assert not verify("whsec_one", body, "v1=abc") and not verify("whsec_one", body, "")
