"""A scripted server behind ``httpx.MockTransport``: answers in order per route, every request kept."""

from __future__ import annotations

import re
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import httpx

Answer = httpx.Response | dict[str, Any]


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def multipart(request: httpx.Request) -> list[Part]:
    """The parts of a multipart/form-data request, in order."""
    match = re.search(r"boundary=([^;]+)", request.headers["content-type"])
    assert match, request.headers["content-type"]
    boundary = b"--" + match.group(1).encode()
    parts = []
    for chunk in request.read().split(boundary)[1:-1]:
        head, _, data = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        text = head.decode()
        name = re.search(r'name="([^"]*)"', text)
        filename = re.search(r'filename="([^"]*)"', text)
        content_type = re.search(r"Content-Type: (\S+)", text)
        assert name
        parts.append(
            Part(
                name.group(1),
                filename.group(1) if filename else None,
                content_type.group(1) if content_type else None,
                data,
            )
        )
    return parts


def form(request: httpx.Request) -> dict[str, str]:
    """The multipart request's text fields."""
    return {p.name: p.data.decode() for p in multipart(request) if p.filename is None}


def files(request: httpx.Request) -> list[Part]:
    return [p for p in multipart(request) if p.filename is not None]


@dataclass
class FakeServer:
    """Route ``"POST /api/v1/classify"`` -> queued answers; the last answer repeats."""

    answers: dict[str, deque[Answer]] = field(default_factory=lambda: defaultdict(deque))
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, route: str, *answers: Answer) -> FakeServer:
        self.answers[route].extend(answers)
        return self

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        queue = self.answers.get(f"{request.method} {request.url.path}")
        if not queue:
            return httpx.Response(404, text="no such fake route")
        answer = queue.popleft() if len(queue) > 1 else queue[0]
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def problem_response(status: int, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json", **headers})
