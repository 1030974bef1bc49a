"""A DeepStack-compatible provider that fails on purpose, for queue and load tests.

It speaks DeepStack's wire format (`POST /v1/vision/detection`, multipart `image`, answer
`{"success": true, "predictions": [...]}`; failures as HTTP 500 `{"success": false, "error": ...}`)
and finds one person in the middle of every frame. Its behaviour is switched at run time:
`fail_rate` (0..1, random failures), `down` (every call fails), `latency` (seconds, ± `jitter`).
It counts calls, successes and failures.

Run it on its own (for benchmarks):
    python -m tests.support.flaky_provider --port 5055 --fail-rate 0.3 --latency 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import random
import threading
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class FlakyProvider:
    fail_rate: float = 0.0
    down: bool = False
    latency: float = 0.0
    jitter: float = 0.0
    seed: int | None = None
    calls: int = 0
    successes: int = 0
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/vision/detection", self._detect, methods=["POST"])])

    def _decide(self) -> bool:
        """True when this call should fail; counts the call."""
        with self._lock:
            self.calls += 1
            failing = self.down or self._random.random() < self.fail_rate
            if failing:
                self.failures += 1
            else:
                self.successes += 1
            return failing

    async def _detect(self, request: Request) -> JSONResponse:
        form = await request.form()
        image = form.get("image")
        if image is None or isinstance(image, str):
            return JSONResponse({"success": False, "error": "No valid image file was found"},
                                status_code=400)
        if self.latency or self.jitter:
            await asyncio.sleep(max(0.0, self.latency + random.uniform(-self.jitter, self.jitter)))
        if self._decide():
            return JSONResponse({"success": False, "error": "simulated failure"}, status_code=500)
        person = {"label": "person", "confidence": 0.9,
                  "x_min": 10, "y_min": 10, "x_max": 30, "y_max": 40}
        return JSONResponse({"success": True, "predictions": [person], "duration": 0})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5055)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--jitter", type=float, default=0.0)
    args = parser.parse_args()
    provider = FlakyProvider(fail_rate=args.fail_rate, latency=args.latency, jitter=args.jitter)
    uvicorn.run(provider.app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
