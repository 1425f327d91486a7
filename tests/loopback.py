"""A real HTTP server on 127.0.0.1 that can drop connections, stall and ignore Range, for download tests."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAYLOAD = bytes(range(256)) * 1200  # 307,200 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Behaviour:
    """What the test server does; changed by each test."""

    files: dict[str, bytes] = field(default_factory=lambda: {"/file.bin": PAYLOAD})
    # Cut the connection after this many body bytes, for this many requests.
    drop_after: int | None = None
    drops_left: int = 0
    # Instead of closing, go silent until the test ends (the client must time out).
    stall: bool = False
    released: threading.Event = field(default_factory=threading.Event)
    ignore_range: bool = False
    requests: list[str | None] = field(default_factory=list)  # the Range header of each request


class _Handler(BaseHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:
        b = self.behaviour
        b.requests.append(self.headers.get("Range"))
        body = b.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not b.ignore_range:
            start = int(match[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if b.drop_after is not None and b.drops_left > 0:
            b.drops_left -= 1
            self.wfile.write(body[start : start + b.drop_after])
            self.wfile.flush()
            if b.stall:
                b.released.wait(10)
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@contextmanager
def serve(behaviour: Behaviour) -> Iterator[str]:
    """The server's base URL while it runs."""
    handler = type("Handler", (_Handler,), {"behaviour": behaviour})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        behaviour.released.set()
        httpd.shutdown()
        httpd.server_close()
