"""Which arm of an experiment a client gets: weighted rendezvous hashing (highest random weight).

Each arm scores ``-w / ln(u)``, with ``u`` in (0, 1) drawn from a keyed hash of the salt, the client id and the
arm's name; the highest score wins. ``-ln(u) / w`` is an exponential variable of rate ``w``, so the arm with
the smallest of them (the highest score) is arm *i* with probability ``w_i / sum(w)``. Nothing but the three
strings goes in: the same client gets the same arm on every request, in every process and replica.

Changing one arm's weight changes only that arm's scores. Raising it can only take clients *to* that arm,
lowering it only *from* it, and no client moves between two other arms: exactly the share the weights say
moves (docs/adr/0010-experiments.md; tests/unit/services/experiments/test_assignment.py shows it).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

_SCALE = 2.0**64


@dataclass(frozen=True)
class Arm:
    """One arm: its name, the model version it serves and its weight (any non-negative scale)."""

    name: str
    version: str
    weight: float


def uniform(salt: str, client_id: str, arm: str) -> float:
    """A number in the open interval (0, 1), fixed by the three strings (the first 64 bits of a BLAKE2b hash)."""
    digest = hashlib.blake2b(
        "\x1f".join((client_id, arm)).encode(), digest_size=8, key=salt.encode()[:64], person=b"cv-ab-arm"
    ).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


def score(salt: str, client_id: str, arm: Arm) -> float:
    """The arm's rendezvous score for this client: ``-w / ln(u)`` (higher wins; 0 for a zero weight)."""
    if arm.weight <= 0:
        return 0.0
    return -arm.weight / math.log(uniform(salt, client_id, arm.name))


def choose_arm(arms: Sequence[Arm], *, salt: str, client_id: str) -> Arm | None:
    """The arm ``client_id`` gets, or None when no arm has a positive weight.

    Ties (equal scores: equal hashes, all but impossible) go to the arm listed first.
    """
    best: Arm | None = None
    best_score = 0.0
    for arm in arms:
        value = score(salt, client_id, arm)
        if value > best_score:
            best, best_score = arm, value
    return best
