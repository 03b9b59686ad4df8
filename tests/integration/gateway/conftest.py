"""The gateway on the real Redis: the unit tests' key store; Redis fixtures come from tests/integration/conftest.py."""

from __future__ import annotations

from tests.unit.gateway.conftest import store  # noqa: F401  (fixture)
