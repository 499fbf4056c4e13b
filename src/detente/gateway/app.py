"""The gateway: an ASGI app (Starlette on uvicorn with uvloop and httptools) that
proxies to ready replicas with aiohttp's client — no hand-written HTTP. Chosen by
measurement (bench/service_bench.py): httpx's async client held this gateway to
≈ 400 requests/s on this machine, aiohttp's to ≈ 2,000.

* ``/<service>/<path>`` goes to a ready replica of ``service``, the prefix stripped.
* ``POST /v1/chat/completions`` and ``/v1/completions`` go to the service whose
  ``spec.model`` is the body's ``model``; ``GET /v1/models`` lists them.
* Least outstanding requests; the response streams through as the replica sends it
  (chunked, server-sent events) without buffering.
* No ready replica (scaling from zero, or all restarting): the request is held up to
  ``hold`` seconds and sent when one is ready, else 503 with ``Retry-After``.
* A connection the replica refuses is retried once on another replica.
* ``/metrics``: per service requests, errors, in flight, held and latency.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from detente.gateway.registry import Registry

#: Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded.
HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length",
})  # fmt: skip


def create_gateway(registry: Registry, hold: float = 60.0) -> Starlette:
    sessions: list[aiohttp.ClientSession] = []  # made on the server's loop, at startup

    async def forward(request: Request, service: str, path: str, body: bytes) -> Response:
        if not registry.known(service):
            return JSONResponse({"error": f"no service {service!r}"}, status_code=404)
        if not await registry.wait_ready(service, hold):
            return JSONResponse({"error": f"service {service!r} has no ready replica"},
                                status_code=503, headers={"Retry-After": "1"})  # fmt: skip
        tried: str | None = None
        for _ in range(2):  # a refused connection is retried once on another replica
            picked = registry.pick(service, avoid=tried)
            if picked is None:
                break
            key, where = picked
            t0 = time.perf_counter()
            q = request.url.query
            url = f"http://{where}/{path}" + (f"?{q}" if q else "")
            headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP]
            try:
                resp = await sessions[0].request(
                    request.method, url, headers=headers, data=body, allow_redirects=False
                )
            except (aiohttp.ClientConnectorError, TimeoutError):
                registry.done(service, key, time.perf_counter() - t0, ok=False)
                tried = key
                continue

            async def finish(
                resp: aiohttp.ClientResponse = resp, key: str = key, t0: float = t0
            ) -> None:
                resp.release()
                registry.done(service, key, time.perf_counter() - t0, resp.status < 500)

            out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP}
            return StreamingResponse(
                _raw(resp), status_code=resp.status, headers=out,
                background=BackgroundTask(finish),
            )  # fmt: skip
        return JSONResponse({"error": f"service {service!r}: replicas refused the connection"},
                            status_code=503, headers={"Retry-After": "1"})  # fmt: skip

    async def by_path(request: Request) -> Response:
        service = request.path_params["service"]
        return await forward(request, service, request.path_params["path"], await request.body())

    async def openai(request: Request) -> Response:
        body = await request.body()
        try:
            model = json.loads(body).get("model")
        except (ValueError, AttributeError):
            return JSONResponse({"error": "the body must be JSON with a model"}, status_code=400)
        service = registry.service_for_model(str(model)) if model is not None else None
        if service is None:
            return JSONResponse({"error": f"no service serves model {model!r}"}, status_code=404)
        return await forward(request, service, request.url.path.lstrip("/"), body)

    async def models(request: Request) -> Response:
        data = [{"id": m, "object": "model", "owned_by": s} for m, s in registry.models().items()]
        return JSONResponse({"object": "list", "data": data})

    async def metrics(request: Request) -> Response:
        lines = []
        for name, st in registry.stats().items():
            for k, v in st.items():
                lines.append(f'detente_gateway_{k}{{service="{name}"}} {v}')
        return PlainTextResponse("\n".join(lines) + "\n")

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    routes = [
        Route("/v1/chat/completions", openai, methods=["POST"]),
        Route("/v1/completions", openai, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/{service}/{path:path}", by_path, methods=methods),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sessions.append(aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000), auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=2.0),
        ))  # fmt: skip
        yield
        await sessions[0].close()

    return Starlette(routes=routes, lifespan=lifespan)


async def _raw(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in resp.content.iter_any():
        yield chunk
