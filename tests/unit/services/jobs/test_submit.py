"""The submit command's pieces against a fake server: the streamed multipart body, the polling, the pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

from services.jobs import submit


def test_the_streamed_body_is_multipart_with_every_file(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8 first")
    (tmp_path / "b" / "c.png").write_bytes(b"second" * 10)
    (tmp_path / "b" / "readme.md").write_text("skipped")
    files = submit.folder_images(tmp_path)
    assert [p.name for p in files] == ["a.jpg", "c.png"]
    body = b"".join(submit.multipart_stream({"task": "detect"}, files, tmp_path, "XYZ", chunk_bytes=7))

    parts: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    def on_part_begin() -> None:
        current.clear()
        current.update(headers={}, data=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        current["field"] = data[start:end].decode()

    def on_header_value(data: bytes, start: int, end: int) -> None:
        current["headers"][current["field"]] = data[start:end].decode()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        current["data"] += data[start:end]

    def on_part_end() -> None:
        parts.append(dict(current))

    parser = MultipartParser(
        b"XYZ",
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    parser.write(body)
    assert [p["data"] for p in parts] == [b"detect", b"\xff\xd8 first", b"second" * 10]
    disposition = [parse_options_header(p["headers"]["Content-Disposition"])[1] for p in parts]
    assert [d.get(b"filename") for d in disposition] == [None, b"a.jpg", b"b/c.png"]
    assert parts[1]["headers"]["Content-Type"] == "image/jpeg"
    assert parts[2]["headers"]["Content-Type"] == "image/png"


def job(status: str, pending: int, **extra: Any) -> dict[str, Any]:
    counts = {"pending": pending, "succeeded": 4 - pending, "failed": 0, "cancelled": 0}
    return {"id": "j", "status": status, "item_count": 4, "counts": counts, **extra}


def test_wait_polls_until_the_job_ends(tmp_path: Path) -> None:
    states = iter([job("queued", 4), job("running", 2), job("succeeded", 0)])
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        return httpx.Response(200, json=next(states))

    client = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://api")
    with (tmp_path / "bar.txt").open("w") as bar:
        last = submit.wait(client, "/api/v1/jobs/j", interval_s=0.01, out=bar)
    assert last["status"] == "succeeded" and len(seen) == 3 and seen[0] == {"limit": "0"}
    assert "4/4" in (tmp_path / "bar.txt").read_text()
    assert submit.summary(last) == "job j succeeded: 4 images (4 succeeded)"


def test_items_follow_the_pages() -> None:
    pages = {0: ([{"index": 0}, {"index": 1}], 2), 2: ([{"index": 2}], None)}

    def handler(request: httpx.Request) -> httpx.Response:
        items, next_offset = pages[int(request.url.params["offset"])]
        return httpx.Response(200, json={"items": items, "next_offset": next_offset})

    client = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://api")
    assert [i["index"] for i in submit.items(client, "/api/v1/jobs/j", page=2)] == [0, 1, 2]


def test_a_job_that_does_not_succeed_exits_1(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json={"id": "j", "item_count": 1, "location": "/api/v1/jobs/j"})
        return httpx.Response(200, json=job("partial", 0))

    client = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://api")
    assert submit.main([str(tmp_path), "--task", "classify"], client) == 0  # without --wait: accepted is enough
    assert submit.main([str(tmp_path), "--task", "classify", "--wait", "--interval", "0"], client) == 1


def test_main_makes_its_own_client(tmp_path: Path, monkeypatch: Any) -> None:
    made: list[str] = []

    class Client(httpx.Client):
        def __init__(self, **kwargs: Any) -> None:
            made.append(str(kwargs["base_url"]))
            super().__init__(transport=httpx.MockTransport(lambda r: httpx.Response(503, text="down")), **kwargs)

    monkeypatch.setattr(submit.httpx, "Client", Client)
    (tmp_path / "a.png").write_bytes(b"x")
    try:
        submit.main([str(tmp_path), "--task", "classify", "--url", "http://elsewhere:1"])
    except SystemExit as exc:
        assert "503" in str(exc)
    assert made == ["http://elsewhere:1"]


def test_behind_the_gateway_the_key_is_sent_and_a_429_waits(tmp_path: Path, monkeypatch: Any) -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200, json=job("succeeded", 0))])
    keys: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("authorization"))
        if request.method == "POST":
            return httpx.Response(202, json={"id": "j", "item_count": 4, "location": "/api/v1/jobs/j"})
        return next(answers)

    class Client(httpx.Client):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(transport=httpx.MockTransport(handler), **kwargs)

    monkeypatch.setattr(submit.httpx, "Client", Client)
    monkeypatch.setenv("CV_API_KEY", "cvk_k")
    (tmp_path / "a.png").write_bytes(b"x")
    assert submit.main([str(tmp_path), "--task", "classify", "--wait", "--interval", "0"]) == 0
    assert keys == ["Bearer cvk_k"] * 3
