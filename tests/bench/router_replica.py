"""An OpenAI-compatible replica on aiohttp and uvloop, for the router benchmark.

    python router_replica.py --model NAME [--events N] [--event-gap S]

The same answers as tests/support/openai_server.py (which the service tests run), but
served the way vLLM and SGLang serve them, on an event loop with keep-alive for
streams too, so that the benchmark measures the router and not a thread per request.
It listens on ``$PORT`` on every interface, is ready at once (``GET /v1/models``),
and answers ``POST /v1/chat/completions`` and ``/v1/completions``: whole, or with
``"stream": true`` as ``--events`` server-sent events then ``data: [DONE]``. Every
answer names this replica (``$MURMUR_JOB_ID``). Standalone (aiohttp, uvloop and the
standard library only): a service runs it by its path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

import uvloop
from aiohttp import web


def answers(settings: argparse.Namespace) -> web.Application:
    replica = os.environ.get("MURMUR_JOB_ID", "")
    usage = {
        "prompt_tokens": 5,
        "completion_tokens": settings.events,
        "total_tokens": 5 + settings.events,
    }

    async def models(request: web.Request) -> web.Response:
        data = [{"id": settings.model, "object": "model"}]
        return web.json_response({"object": "list", "data": data})

    async def complete(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        model = body.get("model", "")
        if not body.get("stream"):
            message = {"role": "assistant", "content": f"hello from {replica}"}
            return web.json_response(
                {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [{"index": 0, "message": message}],
                    "usage": usage,
                    "replica": replica,
                }
            )
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for index in range(settings.events):
            chunk: dict[str, object] = {
                "id": "cmpl-1",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": {"content": f"{index} "}}],
                "replica": replica,
            }
            if index == settings.events - 1:
                chunk["usage"] = usage
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if settings.event_gap:
                await asyncio.sleep(settings.event_gap)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_post("/v1/completions", complete)
    return app


async def serve(settings: argparse.Namespace) -> None:
    runner = web.AppRunner(answers(settings), access_log=None)
    await runner.setup()
    port = int(os.environ["PORT"])
    await web.TCPSite(runner, "0.0.0.0", port).start()
    print(f"serving {settings.model} on {port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--events", type=int, default=64)
    parser.add_argument("--event-gap", type=float, default=0.0)
    uvloop.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
