"""``python -m gateway keys create|list|revoke`` against the local SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.__main__ import main
from gateway.config import get_gateway_settings


@pytest.fixture(autouse=True)
def local_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CV_GATEWAY_DATA_DIR", str(tmp_path))
    get_gateway_settings.cache_clear()
    yield
    get_gateway_settings.cache_clear()


def test_create_list_revoke(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--tier", "pro", "--name", "ci"]) == 0
    out = capsys.readouterr().out.splitlines()
    key = out[-1]
    prefix = key.split("_")[1]
    assert key.startswith("cvk_") and prefix in out[0]
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert prefix in listed and "active" in listed and key not in listed
    assert main(["keys", "revoke", prefix]) == 0
    assert main(["keys", "list"]) == 0
    assert "revoked" in capsys.readouterr().out.splitlines()[-1]


def test_create_refuses_an_unknown_tier(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--tier", "gold", "--name", "x"]) == 2
    assert "unknown tier" in capsys.readouterr().err


def test_revoke_unknown_prefix_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "revoke", "000000000000"]) == 1
    assert "no key" in capsys.readouterr().err


def test_serve_runs_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options))
    assert main(["serve"]) == 0
    assert seen == {"host": "127.0.0.1", "port": 8081, "access_log": False, "server_header": False}


def test_tier_moves_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--tier", "pro", "--name", "ci"]) == 0
    prefix = capsys.readouterr().out.splitlines()[-1].split("_")[1]
    assert main(["keys", "tier", prefix, "gold"]) == 2
    assert main(["keys", "tier", "000000000000", "free"]) == 1
    assert main(["keys", "tier", prefix, "free"]) == 0
    assert main(["keys", "list"]) == 0
    assert "\tfree\t" in capsys.readouterr().out


def test_a_change_that_cannot_be_announced_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CV_GATEWAY_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    get_gateway_settings.cache_clear()
    assert main(["keys", "create", "--tier", "pro", "--name", "ci"]) == 0
    assert "could not announce the change" in capsys.readouterr().err
