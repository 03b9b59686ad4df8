"""The images' HTTP health check: 2xx is healthy; an error status, a refused connection or a timeout is not."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kernel.probe import main, probe


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = {"/ok": 200, "/down": 503}.get(self.path, 404)
        self.send_response(status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_2xx_answer_is_healthy(base_url: str) -> None:
    assert probe(f"{base_url}/ok") and main([f"{base_url}/ok"]) == 0


def test_an_error_status_is_unhealthy(base_url: str) -> None:
    assert not probe(f"{base_url}/down") and main([f"{base_url}/missing"]) == 1


def test_nothing_listening_is_unhealthy() -> None:
    assert main(["http://127.0.0.1:9/health", "--timeout", "1"]) == 1
