"""A small OpenAI-compatible model server for tests: what a service's replica runs
where no GPU (and no vLLM) exists.

    python openai_server.py --model NAME [--adapter NAME ...] [--start-delay S]
        [--ready-when FILE] [--events N] [--record FILE] [--hang]

It listens on ``$PORT`` on every interface (as a replica must) and serves:

- ``GET /v1/models``: 503 until ``--start-delay`` has passed and ``--ready-when``
  exists (a model still loading), then the model and its adapters (``model:adapter``);
- ``POST /v1/chat/completions`` and ``/v1/completions``: an answer naming the model
  asked for and this replica (``$MURMUR_JOB_ID``), with a ``usage`` block and the
  SHA-256 of the request's body as it arrived (``request_sha256``); with
  ``"stream": true``, ``--events`` server-sent events then ``data: [DONE]``, the
  last chunk carrying ``usage`` (with ``"stream_options": {"include_usage": true}``,
  a chunk of its own after them, with no choices, as OpenAI's and vLLM's); with
  ``--hang``, no answer at all (a replica that takes requests and never answers them);
- ``POST /crash``: exits at once with code 3 (a replica that dies).

Every request is appended to ``--record`` (one JSON line: path, model, replica)
when given, so a test can tell which replica answered what.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle's algorithm on, the body
    # waits for the client's delayed ACK (40 ms a request on a kept-alive connection).
    disable_nagle_algorithm = True
    settings: argparse.Namespace
    ready_at: float
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        if self.path != "/v1/models":
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        gate = self.settings.ready_when
        if time.monotonic() < self.ready_at or (gate and not os.path.exists(gate)):
            self._json(503, {"error": {"message": "loading the model"}})
            return
        names = [
            self.settings.model,
            *(f"{self.settings.model}:{a}" for a in self.settings.adapter),
        ]
        self._json(
            200, {"object": "list", "data": [{"id": name, "object": "model"} for name in names]}
        )

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        body = json.loads(raw or b"{}")
        if self.path == "/crash":
            os._exit(3)
        if self.settings.hang:
            threading.Event().wait()  # the connection stays open, unanswered
        if self.path not in ("/v1/chat/completions", "/v1/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        model = body.get("model", "")
        self._record({"path": self.path, "model": model, "stream": bool(body.get("stream"))})
        replica = os.environ.get("MURMUR_JOB_ID", "")
        usage = {
            "prompt_tokens": 5,
            "completion_tokens": self.settings.events,
            "total_tokens": 5 + self.settings.events,
        }
        if not body.get("stream"):
            self._json(
                200,
                {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": f"hello from {replica}"},
                        }
                    ],
                    "usage": usage,
                    "replica": replica,
                    "request_sha256": hashlib.sha256(raw).hexdigest(),
                },
            )
            return
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for index in range(self.settings.events):
            chunk: dict[str, Any] = {
                "id": "cmpl-1",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": {"content": f"{index} "}}],
                "replica": replica,
            }
            if index == self.settings.events - 1 and not include_usage:
                chunk["usage"] = usage
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            time.sleep(self.settings.event_gap)
        if include_usage:  # as OpenAI and vLLM: a last chunk of its own, with no choices
            last = {"id": "cmpl-1", "object": "chat.completion.chunk", "model": model,
                    "choices": [], "usage": usage}  # fmt: skip
            self.wfile.write(f"data: {json.dumps(last)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _json(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, entry: dict[str, object]) -> None:
        if not self.settings.record:
            return
        entry["replica"] = os.environ.get("MURMUR_JOB_ID", "")
        with self.lock, open(self.settings.record, "a") as out:
            out.write(json.dumps(entry) + "\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # Each stream closes its connection: dozens of clients reconnecting at once
    # overflow the default backlog of 5, and a dropped SYN is retried after 1 s.
    request_queue_size = 128


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter", action="append", default=[])
    parser.add_argument("--start-delay", type=float, default=0.0)
    parser.add_argument("--ready-when", default="")
    parser.add_argument("--events", type=int, default=4)
    parser.add_argument("--event-gap", type=float, default=0.0)
    parser.add_argument("--record", default="")
    parser.add_argument("--hang", action="store_true", help="take requests, never answer")
    parser.add_argument("--pid-dir", default="", help="write DIR/$MURMUR_JOB_ID.pid")
    settings = parser.parse_args()
    Handler.settings = settings
    Handler.ready_at = time.monotonic() + settings.start_delay
    if settings.pid_dir:
        job = os.environ.get("MURMUR_JOB_ID", "replica")
        with open(os.path.join(settings.pid_dir, f"{job}.pid"), "w") as out:
            out.write(str(os.getpid()))
    server = Server(("", int(os.environ["PORT"])), Handler)
    print(f"serving {settings.model} on {os.environ['PORT']}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
