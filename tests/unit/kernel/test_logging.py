"""JSON logs with the request id from a context variable; request-id hygiene."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import pytest

from kernel.logging import (
    JsonFormatter,
    bind_request_id,
    clean_request_id,
    configure_logging,
    get_request_id,
    new_request_id,
    reset_request_id,
)


def record(message: str = "hello %s", args: tuple[object, ...] = ("world",), **extra: object) -> logging.LogRecord:
    log_record = logging.LogRecord("services.test", logging.WARNING, __file__, 1, message, args, None)
    log_record.__dict__.update(extra)
    return log_record


def test_json_formatter_emits_valid_json_with_bound_request_id() -> None:
    token = bind_request_id("req-42")
    try:
        line = JsonFormatter().format(record())
    finally:
        reset_request_id(token)
    payload = json.loads(line)
    assert payload["message"] == "hello world"
    assert payload["level"] == "WARNING"
    assert payload["logger"] == "services.test"
    assert payload["request_id"] == "req-42"
    assert payload["ts"].endswith("+00:00")
    assert "\n" not in line


def test_json_formatter_without_request_id_gives_null() -> None:
    assert json.loads(JsonFormatter().format(record()))["request_id"] is None


def test_json_formatter_record_request_id_wins_over_context() -> None:
    token = bind_request_id("from-context")
    try:
        payload = json.loads(JsonFormatter().format(record(request_id="from-record")))
    finally:
        reset_request_id(token)
    assert payload["request_id"] == "from-record"


def test_json_formatter_includes_extras_and_serialises_odd_values() -> None:
    payload = json.loads(JsonFormatter().format(record(model="m:v1", size=3, path=Path("/tmp/x"))))
    assert payload["model"] == "m:v1"
    assert payload["size"] == 3
    assert payload["path"] == "/tmp/x"  # not JSON-native: str()
    assert "args" not in payload and "msg" not in payload and "levelno" not in payload


def test_json_formatter_includes_exception_traceback() -> None:
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        log_record = logging.LogRecord("services.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    payload = json.loads(JsonFormatter().format(log_record))
    assert "RuntimeError: kaput" in payload["exc_info"]
    assert "Traceback" in payload["exc_info"]


def test_bind_and_reset_request_id() -> None:
    assert get_request_id() is None
    token = bind_request_id("abc")
    assert get_request_id() == "abc"
    reset_request_id(token)
    assert get_request_id() is None


def test_new_request_id_is_32_hex_and_unique() -> None:
    first, second = new_request_id(), new_request_id()
    assert len(first) == 32 and int(first, 16) >= 0
    assert first != second


@pytest.mark.parametrize("value", ["abc-123", "9f86d081884c7d65", "x" * 128, "req id with spaces"])
def test_clean_request_id_keeps_sane_ids(value: str) -> None:
    assert clean_request_id(value) == value


@pytest.mark.parametrize(
    "value",
    [None, "", "x" * 129, "line\nbreak", "tab\tid", "nul\x00", "caf\u00e9", "\u200b"],
    ids=["none", "empty", "too-long", "newline", "tab", "nul", "non-ascii", "zero-width"],
)
def test_clean_request_id_replaces_bad_ids(value: str | None) -> None:
    cleaned = clean_request_id(value)
    assert cleaned != value
    assert len(cleaned) == 32
    int(cleaned, 16)


def test_configure_logging_installs_one_json_handler(restore_services_logger: logging.Logger) -> None:
    logger = restore_services_logger
    configure_logging("debug", json_logs=True)
    configure_logging("debug", json_logs=True)
    ours = [h for h in logger.handlers if h.get_name() == "cv-api-json"]
    assert len(ours) == 1
    assert isinstance(ours[0].formatter, JsonFormatter)
    assert logger.level == logging.DEBUG
    assert logger.propagate is False
    stream = io.StringIO()
    ours[0].setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("services.child").info("through the tree", extra={"k": "v"})
    assert json.loads(stream.getvalue())["k"] == "v"


def test_configure_logging_plain_text(restore_services_logger: logging.Logger) -> None:
    logger = restore_services_logger
    logger.handlers[:] = [h for h in logger.handlers if h.get_name() != "cv-api-json"]
    configure_logging("warning", json_logs=False)
    (ours,) = [h for h in logger.handlers if h.get_name() == "cv-api-json"]
    assert not isinstance(ours.formatter, JsonFormatter)
    assert logger.level == logging.WARNING
