"""services/serve.py's pieces that need no BentoML service: the declared variables and the socket.

The launch itself (load, exec, serve, refuse) runs for real in tests/integration/test_bare_worker.py.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import pytest

from services.serve import ServeError, bind, parse_args, service_env


@dataclass
class Var:
    name: str
    value: str | None = None


def test_a_declared_variable_takes_the_environments_value_then_its_default() -> None:
    envs = [Var("FROM_ENV", "default"), Var("DEFAULTED", "fallback")]
    assert service_env(envs, {"FROM_ENV": "set"}) == {"FROM_ENV": "set", "DEFAULTED": "fallback"}


def test_a_required_variable_that_is_not_set_is_refused() -> None:
    with pytest.raises(ServeError, match="'NEEDED' is required"):
        service_env([Var("NEEDED")], {})


def test_the_socket_listens_and_survives_exec() -> None:
    sock = bind("127.0.0.1", 0, backlog=16)
    try:
        assert sock.get_inheritable()  # a descriptor that is not inheritable closes on exec
        assert os.get_inheritable(sock.fileno())
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # accepted into the backlog: it listens
    finally:
        sock.close()


def test_an_ipv6_host_gets_an_ipv6_socket() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        sock = bind("::1", 0, backlog=16)
    except OSError as exc:  # a kernel without an IPv6 loopback
        pytest.skip(f"no IPv6 loopback: {exc}")
    with sock:
        assert sock.family == socket.AF_INET6


def test_a_host_that_is_not_an_address_is_refused() -> None:
    with pytest.raises(ServeError, match="invalid host IP address"):
        bind("localhost", 0, backlog=16)


def test_the_command_line_defaults_are_a_containers() -> None:
    args = parse_args(["services.classifier:ClassifierService"])
    assert (args.target, args.host, args.port) == ("services.classifier:ClassifierService", "0.0.0.0", 3000)
