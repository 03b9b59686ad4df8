"""How a worker reaches the models: service clients (fakes here) where addresses are known, else in process."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kernel.errors import InvalidParameter, ModelUnavailable
from services.clients import inprocess, remote
from services.clients.inprocess import InProcessClient
from services.clients.jobs import job_client
from services.clients.remote import RemoteClient
from services.config import ServingSettings
from services.models.worker import InferenceItem, Outcome


class FakeClient:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls = 0

    def infer(self, items: list[InferenceItem]) -> Any:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def item() -> InferenceItem:
    return InferenceItem(image=np.zeros((4, 4, 3), np.uint8))


def settings(**values: Any) -> ServingSettings:
    return ServingSettings(_env_file=None, **values)  # type: ignore[call-arg]


def test_service_answers_are_outcomes_and_the_client_is_reused() -> None:
    made: list[str] = []
    client = FakeClient([{"error": {"type": "invalid-image"}}])

    def connect(model: str) -> FakeClient:
        made.append(model)
        return client

    caller = RemoteClient(connect, ["classifier"])
    assert caller.infer("classifier", [item()]) == [Outcome(error={"type": "invalid-image"})]
    caller.infer("classifier", [item()])
    assert made == ["classifier"] and client.calls == 2


def test_a_failing_service_is_unavailable_and_its_client_replaced() -> None:
    clients = [FakeClient(ConnectionError("refused")), FakeClient([])]
    caller = RemoteClient(lambda m: clients.pop(0), ["detector"])
    with pytest.raises(ModelUnavailable):
        caller.infer("detector", [item()])
    assert caller.infer("detector", []) == [] and clients == []


def test_a_client_that_cannot_be_made_is_unavailable() -> None:
    def connect(model: str) -> FakeClient:
        raise OSError("no such socket")

    with pytest.raises(ModelUnavailable):
        RemoteClient(connect, ["detector"]).infer("detector", [item()])


def test_service_errors_pass_through() -> None:
    caller = RemoteClient(lambda m: FakeClient(InvalidParameter("x")), ["detector"])
    with pytest.raises(InvalidParameter):
        caller.infer("detector", [item()])


def test_a_model_without_an_address_goes_to_the_fallback_or_is_unavailable() -> None:
    class Fallback:
        def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
            return [Outcome(error={"type": model})]

    fallback: Any = Fallback()
    assert RemoteClient(FakeClient, [], fallback=fallback).infer("detector", [item()]) == [
        Outcome(error={"type": "detector"})
    ]
    with pytest.raises(ModelUnavailable):
        RemoteClient(FakeClient, []).infer("detector", [item()])


def test_job_client_prefers_explicit_urls_then_the_runner_map(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, str, str]] = []
    monkeypatch.setattr(remote, "bentoml_client", lambda m, u, t: made.append((m, u, t)))
    chosen = job_client(
        settings(classifier_url="http://c:3000", bentoml_runner_map={"classifier": "x", "detector": "file:///d.sock"})
    )
    assert isinstance(chosen, RemoteClient)
    assert chosen.models == {"classifier", "detector"}
    assert isinstance(chosen.fallback, InProcessClient)


def test_job_client_runs_the_models_in_process_without_addresses() -> None:
    client = job_client(settings())
    assert isinstance(client, InProcessClient)
    assert client.settings.ort_solo_threads == 0  # background work never takes a model's solo session (ADR 0019)


def test_in_process_models_load_once_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    class Worker:
        def __init__(self, pool: str) -> None:
            self.pool = pool

        def run(self, items: list[InferenceItem]) -> list[Outcome]:
            return [Outcome(error={"type": self.pool})] * len(items)

    monkeypatch.setattr(inprocess, "build_pool", lambda name, s: built.append(name) or name)
    monkeypatch.setattr(inprocess, "ModelWorker", Worker)
    caller = InProcessClient(settings())
    caller.infer("classifier", [item()])
    assert caller.infer("classifier", [item()]) == [Outcome(error={"type": "classifier"})]
    assert built == ["classifier"]


def test_the_bentoml_client_speaks_pickle_to_the_service() -> None:
    client = remote.bentoml_client("classifier", "http://127.0.0.1:1")  # nothing listens: no call is made
    try:
        assert client.media_type == remote.PICKLE
    finally:
        client.close()


def test_services_deployed_apart_are_spoken_to_in_json() -> None:
    """A service at an explicit URL is a BentoML main server, which refuses pickle; one it started takes it."""
    chosen = job_client(
        settings(classifier_url="http://127.0.0.1:1", bentoml_runner_map={"detector": "http://127.0.0.1:2"})
    )
    assert isinstance(chosen, RemoteClient)
    clients = {model: chosen.connections.connect(model) for model in chosen.models}
    try:
        assert clients["classifier"].media_type == remote.JSON
        assert clients["detector"].media_type == remote.PICKLE
        assert clients["classifier"].url.startswith("http://127.0.0.1:1")
    finally:
        for client in clients.values():
            client.close()
