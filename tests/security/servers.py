"""Small real servers on loopback for the security and discovery tests: an HTTP server that
records requests and answers 200 or a redirect, and a plain TCP listener."""

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RecordingServer(ThreadingHTTPServer):
    """Answers every request with `status` (a redirect to `location` when set) and keeps
    each request's path."""

    daemon_threads = True

    def __init__(
        self, host: str = "127.0.0.1", *, port: int = 0, status: int = 200, location: str = "", body: bytes = b"ok"
    ):
        self.status = status
        self.location = location
        self.body = body
        self.paths: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                pass

            def _handle(self) -> None:
                server: RecordingServer = self.server  # type: ignore[assignment]
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                server.paths.append(self.path)
                self.send_response(server.status)
                if server.location:
                    self.send_header("Location", server.location)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(server.body)

            do_GET = do_POST = do_HEAD = _handle

        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return self.server_address[1]


@contextmanager
def http_server(host: str = "127.0.0.1", **kwargs) -> Iterator[RecordingServer]:
    server = RecordingServer(host, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


@contextmanager
def tcp_listener(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that accepts connections and says nothing (not HTTP); yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(64)
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.close()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
