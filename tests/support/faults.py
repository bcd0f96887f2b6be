"""A socket server on 127.0.0.1 that misbehaves on demand, for the faults a real service won't produce.

This is the only fake in the test suite: everything else runs against the real act3-server.

    with FaultServer("hang") as srv:      # accepts TCP, never answers
        Client(srv.url, "key", read_timeout=0.3).credits()   # -> OfflineError

Modes: "hang", "500", "garbage" (200 with a non-JSON body), "json" (200 with `body`), "drop"
(closes the connection without a word), "status" (any `status` with `body` and `headers`).
`closed_port_url()` gives a URL nobody listens on (connection refused).
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any


class FaultServer:
    def __init__(
        self,
        mode: str = "hang",
        *,
        status: int = 200,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.mode = mode
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.requests: list[bytes] = []  # raw request heads, to assert what was (not) sent
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="fault-server", daemon=True)
        self._thread.start()

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()
        with self._lock:
            for conn in self._held:
                conn.close()
            self._held.clear()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            head = self._read_head(conn)
        except OSError:
            conn.close()
            return
        with self._lock:
            self.requests.append(head)
        if self.mode == "hang":
            with self._lock:
                self._held.append(conn)  # keep it open and silent until close()
            return
        if self.mode == "drop":
            conn.close()
            return
        if self.mode == "500":
            status, payload = 500, b'{"error": {"code": "internal_error", "message": "Something broke."}}'
        elif self.mode == "garbage":
            status, payload = 200, b"<html>Gateway says hello</html>"
        else:
            status = self.status
            payload = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        ctype = "text/html" if self.mode == "garbage" else "application/json"
        try:
            conn.sendall(
                f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(payload)}\r\n"
                f"Connection: close\r\n{extra}\r\n".encode()
                + payload
            )
        finally:
            conn.close()

    @staticmethod
    def _read_head(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.split(b"\r\n\r\n")[0]


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where the port was just released: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
