#!/usr/bin/env python3
"""fake-llm: a stand-in for a model server where no GPU is present. It speaks enough of
the OpenAI API for the gateway and the autoscaler to be exercised for real: it streams
made-up tokens at a set rate. It is not a model.

    PORT=8000 TOKEN_RATE=50 python3 fake_llm.py

GET /healthz · GET /v1/models · POST /v1/chat/completions and /v1/completions
({"model", "max_tokens", "stream"}: server-sent events when stream is true) ·
any other GET answers with the replica's identity. Standard library only.
"""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = os.environ.get("MODEL", "fake-llm")
RATE = float(os.environ.get("TOKEN_RATE", "50"))  # tokens per second per request
WHO = f"{os.environ.get('SLURMD_NODENAME', 'local')}:{os.environ.get('PORT', '?')}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment: no Nagle/delayed-ACK stall of ~40 ms.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def log_message(self, *args: object) -> None:  # quiet: the gateway measures
        pass

    def _json(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._json(200, {"status": "ok"})
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._json(200, {"replica": WHO, "pid": os.getpid(), "path": self.path})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            req = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": "body is not JSON"})
            return
        n = max(1, min(int(req.get("max_tokens", 16)), 4096))
        if not req.get("stream"):
            time.sleep(n / RATE)
            text = " ".join(f"tok{i}" for i in range(n))
            self._json(200, {"object": "chat.completion", "model": MODEL, "replica": WHO,
                             "choices": [{"index": 0, "message": {"role": "assistant",
                                                                  "content": text}}]})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(n):
            chunk = {"object": "chat.completion.chunk", "model": MODEL,
                     "choices": [{"index": 0, "delta": {"content": f"tok{i} "}}]}
            self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
            time.sleep(1 / RATE)
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of connections is not dropped

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up mid-request is not news


if __name__ == "__main__":
    Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
