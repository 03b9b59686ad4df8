"""Assignment: sticky (same arm every call, every process), spread as the weights say, minimal movement."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence

import pytest
from scipy.stats import chisquare

from services.experiments.assignment import Arm, choose_arm, score, uniform

SALT = "0f3c9a"
IDS = [f"client-{i}" for i in range(100_000)]


def arms(*weights: float) -> list[Arm]:
    return [Arm(name=f"arm{i}", version=f"v{i}", weight=w) for i, w in enumerate(weights)]


def assign_all(choices: Sequence[Arm], ids: Sequence[str] = IDS, salt: str = SALT) -> list[str]:
    picked = [choose_arm(choices, salt=salt, client_id=i) for i in ids]
    return [p.name if p is not None else "" for p in picked]


def test_a_client_gets_the_same_arm_on_every_call() -> None:
    choices = arms(1, 1, 1)
    first = assign_all(choices, IDS[:2000])
    for _ in range(3):
        assert assign_all(choices, IDS[:2000]) == first


def test_a_client_gets_the_same_arm_in_another_process() -> None:
    choices = arms(5, 3, 2)
    script = (
        "import json, sys\n"
        "from services.experiments.assignment import Arm, choose_arm\n"
        f"arms = [Arm(f'arm{{i}}', f'v{{i}}', w) for i, w in enumerate({[a.weight for a in choices]})]\n"
        f"print(json.dumps([choose_arm(arms, salt={SALT!r}, client_id=f'client-{{i}}').name for i in range(2000)]))\n"
    )
    # A fresh interpreter has another hash seed: nothing may depend on Python's own hash().
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "12345"}
    )
    assert json.loads(out.stdout) == assign_all(choices, IDS[:2000])


@pytest.mark.parametrize("weights", [(1, 1), (50, 30, 20), (0.9, 0.1), (1, 2, 3, 4)])
def test_arms_are_chosen_as_often_as_their_weights_say(weights: tuple[float, ...]) -> None:
    counts = Counter(assign_all(arms(*weights)))
    observed = [counts[f"arm{i}"] for i in range(len(weights))]
    expected = [len(IDS) * w / sum(weights) for w in weights]
    assert sum(observed) == len(IDS)
    # A fixed salt makes this deterministic; a wrong spread (say 52/48 for 50/50) gives p far below 1e-3.
    assert chisquare(observed, expected).pvalue > 1e-3, (observed, expected)


def test_the_chi_squared_check_can_fail() -> None:
    counts = Counter(assign_all(arms(52, 48)))  # checked against 50/50: 2 points off is caught
    assert chisquare([counts["arm0"], counts["arm1"]], [50_000, 50_000]).pvalue < 1e-3


def test_raising_a_weight_moves_clients_only_to_that_arm_and_as_many_as_it_must() -> None:
    before = assign_all(arms(50, 50))
    after = assign_all(arms(70, 30))
    moves = Counter((b, a) for b, a in zip(before, after, strict=True) if b != a)
    assert set(moves) == {("arm1", "arm0")}  # nobody leaves arm0
    assert abs(moves[("arm1", "arm0")] / len(IDS) - 0.20) < 0.005  # 50 % -> 70 %: a fifth of the clients move


def test_changing_one_arm_never_moves_clients_between_the_others() -> None:
    before = assign_all(arms(40, 30, 30))
    after = assign_all(arms(10, 30, 30))  # arm0 shrinks from 40 % to 1/7
    moves = Counter((b, a) for b, a in zip(before, after, strict=True) if b != a)
    assert set(moves) <= {("arm0", "arm1"), ("arm0", "arm2")}
    assert abs(sum(moves.values()) / len(IDS) - (0.40 - 10 / 70)) < 0.005


def test_adding_an_arm_takes_clients_only_into_the_new_arm() -> None:
    before = assign_all(arms(50, 50, 0))
    after = assign_all(arms(50, 50, 25))
    moves = Counter((b, a) for b, a in zip(before, after, strict=True) if b != a)
    assert {a for _, a in moves} == {"arm2"}
    assert abs(sum(moves.values()) / len(IDS) - 0.20) < 0.005  # the new arm's share: 25 / 125


def test_a_new_salt_reshuffles_clients() -> None:
    first = assign_all(arms(1, 1), IDS[:20_000])
    second = assign_all(arms(1, 1), IDS[:20_000], salt="another")
    changed = sum(a != b for a, b in zip(first, second, strict=True)) / 20_000
    assert 0.45 < changed < 0.55  # independent draws: half move


def test_zero_weights_are_never_chosen_and_all_zero_chooses_nobody() -> None:
    assert set(assign_all(arms(0, 1, 0), IDS[:1000])) == {"arm1"}
    assert choose_arm(arms(0, 0), salt=SALT, client_id="c") is None
    assert score(SALT, "c", Arm("a", "v1", 0)) == 0.0


def test_uniform_lies_strictly_between_0_and_1_and_depends_on_every_input() -> None:
    values = {uniform(SALT, "c", "a"), uniform(SALT, "c", "b"), uniform(SALT, "d", "a"), uniform("s2", "c", "a")}
    assert len(values) == 4 and all(0.0 < v < 1.0 for v in values)
