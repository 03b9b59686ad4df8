"""Simulation of the A/B sequential test (mSPRT) against peeking with a fixed-horizon z-test.

Thousands of simulated experiments on the accuracy of two arms (Bernoulli feedback), looked at after every
``per_look`` judgements per arm, run through the very functions the service uses
(services/experiments/statistics.py). Under no effect it measures how often each procedure ever declares a
difference (the false-positive rate over all looks); under a real effect, the mSPRT's power at the largest
sample and its average stopping sample, beside a single fixed-horizon z-test at that sample. A last null run
looks after every single judgement (continuous monitoring). Writes ``benchmarks/reports/ab_simulation.{md,json,png}``.

Usage: python benchmarks/ab_simulation.py [--experiments 2000] [--looks 20] [--per-look 500] [--seed 20170101]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from benchmarks import ab_simulation_report as report
from services.experiments import statistics as st

REPORTS = Path(__file__).resolve().parent / "reports"
Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Params:
    experiments: int = 10000
    looks: int = 20
    per_look: int = 500  # judgements per arm between two looks
    p_control: float = 0.75
    effects: tuple[float, ...] = (0.78, 0.80)  # treatment accuracies with a real effect
    alpha: float = 0.05
    tau: float = st.DEFAULT_TAU
    taus: tuple[float, ...] = (0.02, 0.05, 0.1)  # the sensitivity table
    continuous_n: int = 10000  # judgements per arm of the continuously monitored null run
    seed: int = 20170101

    @property
    def max_n(self) -> int:
        return self.looks * self.per_look


def simulate_looks(rng: np.random.Generator, params: Params, p_treatment: float) -> tuple[Array, Array, Array, Array]:
    """Cumulative ``(x_c, n_c, x_t, n_t)`` at each look, shape ``(experiments, looks)``."""
    shape = (params.experiments, params.looks)
    xc = np.cumsum(rng.binomial(params.per_look, params.p_control, shape), axis=1)
    xt = np.cumsum(rng.binomial(params.per_look, p_treatment, shape), axis=1)
    n = np.broadcast_to(np.arange(1, params.looks + 1) * params.per_look, shape)
    return xc, n, xt, n


def msprt_p(xc: Array, nc: Array, xt: Array, nt: Array, tau: float) -> Array:
    """Always-valid p-values along the looks; looks with too few samples per arm keep p = 1."""
    log_lr = st.msprt_log_lr(xt / nt - xc / nc, st.bernoulli_variance(xc, nc, xt, nt), tau)
    usable = (nc >= st.MIN_SEQUENTIAL_SAMPLES) & (nt >= st.MIN_SEQUENTIAL_SAMPLES)
    return st.always_valid_p(np.where(usable, log_lr, -np.inf))


def z_rejects(xc: Array, nc: Array, xt: Array, nt: Array, alpha: float) -> Array:
    """Where a two-sided fixed-horizon z-test (pooled SE) at that look alone rejects."""
    pooled = (xc + xt) / (nc + nt)
    se = np.sqrt(pooled * (1 - pooled) * (1 / nc + 1 / nt))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (xt / nt - xc / nc) / se, 0.0)
    return np.asarray(np.abs(z) > stats.norm.ppf(1 - alpha / 2))


def rate(hits: int, trials: int, alpha: float) -> dict[str, float]:
    """A simulated rate with its Wilson interval (the Monte Carlo uncertainty)."""
    low, high = st.wilson_interval(hits, trials, alpha) or (0.0, 1.0)
    return {"rate": hits / trials, "low": low, "high": high, "hits": hits, "trials": trials}


def first_crossing(rejected: Array) -> Array:
    """Index of the first look that rejects per experiment; -1 where none does."""
    return np.where(rejected.any(axis=1), rejected.argmax(axis=1), -1)


def run_null(rng: np.random.Generator, params: Params) -> dict[str, Any]:
    looks = simulate_looks(rng, params, params.p_control)
    msprt = msprt_p(*looks, params.tau) <= params.alpha
    naive = z_rejects(*looks, params.alpha)
    e = params.experiments
    return {
        "msprt": rate(int(msprt.any(axis=1).sum()), e, params.alpha),
        "naive_peeking": rate(int(naive.any(axis=1).sum()), e, params.alpha),
        "single_look_at_max_n": rate(int(naive[:, -1].sum()), e, params.alpha),
        "by_look": {
            "n_per_arm": [params.per_look * (k + 1) for k in range(params.looks)],
            "msprt": msprt.mean(axis=0).tolist(),  # the p-value is a running minimum: a rejection stays
            "naive_peeking": np.logical_or.accumulate(naive, axis=1).mean(axis=0).tolist(),
        },
    }


def run_effect(rng: np.random.Generator, params: Params, p_treatment: float, tau: float) -> dict[str, Any]:
    looks = simulate_looks(rng, params, p_treatment)
    rejected = msprt_p(*looks, tau) <= params.alpha
    first = first_crossing(rejected)
    stopped = first >= 0
    stop_n = np.where(stopped, (first + 1) * params.per_look, params.max_n)
    differences = looks[2] / looks[3] - looks[0] / looks[1]
    wrong_sign = stopped & (np.take_along_axis(differences, first[:, None].clip(0), axis=1)[:, 0] < 0)
    fixed = z_rejects(*looks, params.alpha)
    e = params.experiments
    fixed_n = fixed_horizon_n(params.p_control, p_treatment, params.alpha, 0.8)
    # The mSPRT does not depend on the horizon: its power by the fixed design's n is read off the looks.
    at = max(min(fixed_n // params.per_look, params.looks) - 1, 0)
    return {
        "p_control": params.p_control,
        "p_treatment": p_treatment,
        "tau": tau,
        "msprt_power": rate(int(stopped.sum()), e, params.alpha),
        "wrong_direction": int(wrong_sign.sum()),
        "mean_stop_n": float(stop_n.mean()),
        "median_stop_n_of_stopped": float(np.median(stop_n[stopped])) if stopped.any() else None,
        "fixed_power_at_max_n": rate(int(fixed[:, -1].sum()), e, params.alpha),
        "fixed_n_for_80_percent": fixed_n,
        "msprt_power_near_fixed_n": {
            "n": (at + 1) * params.per_look,
            **rate(int(rejected[:, at].sum()), e, params.alpha),
        },
        "by_look": {
            "msprt": rejected.mean(axis=0).tolist(),
            "fixed_single_look": fixed.mean(axis=0).tolist(),
        },
    }


def run_continuous_null(rng: np.random.Generator, params: Params, chunk: int = 250) -> dict[str, Any]:
    """Null experiments looked at after every pair of judgements (one per arm), in chunks of experiments."""
    n = np.arange(1, params.continuous_n + 1)
    msprt_hits = naive_hits = 0
    for start in range(0, params.experiments, chunk):
        rows = min(chunk, params.experiments - start)
        shape = (rows, params.continuous_n)
        xc = np.cumsum(rng.random(shape, np.float32) < params.p_control, axis=1, dtype=np.int32)
        xt = np.cumsum(rng.random(shape, np.float32) < params.p_control, axis=1, dtype=np.int32)
        msprt_hits += int((msprt_p(xc, n, xt, n, params.tau) <= params.alpha).any(axis=1).sum())
        # The naive procedure also waits for the minimum sample, or it would reject on the first few pairs.
        naive = z_rejects(xc, n, xt, n, params.alpha) & (n >= st.MIN_SEQUENTIAL_SAMPLES)
        naive_hits += int(naive.any(axis=1).sum())
    return {
        "looks_per_experiment": params.continuous_n,
        "msprt": rate(msprt_hits, params.experiments, params.alpha),
        "naive_peeking": rate(naive_hits, params.experiments, params.alpha),
    }


def fixed_horizon_n(p_control: float, p_treatment: float, alpha: float, power: float) -> int:
    """Per-arm sample of a two-sided two-proportion z-test with that power (the textbook formula)."""
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    mean = (p_control + p_treatment) / 2
    spread = z_a * np.sqrt(2 * mean * (1 - mean)) + z_b * np.sqrt(
        p_control * (1 - p_control) + p_treatment * (1 - p_treatment)
    )
    return int(np.ceil(spread**2 / (p_treatment - p_control) ** 2))


def simulate(params: Params) -> dict[str, Any]:
    """Every scenario, each from its own child of the seed (so adding one does not shift the others)."""
    started = time.perf_counter()
    seeds = np.random.SeedSequence(params.seed).spawn(3 + len(params.effects) + len(params.taus) * 2)
    rngs = [np.random.default_rng(s) for s in seeds]
    null = run_null(rngs[0], params)
    continuous = run_continuous_null(rngs[1], params)
    effects = [run_effect(rngs[2 + i], params, p, params.tau) for i, p in enumerate(params.effects)]
    offset = 2 + len(params.effects)
    sensitivity = []
    for i, tau in enumerate(params.taus):
        tuned = Params(**{**asdict(params), "tau": tau})
        null_fpr = run_null(rngs[offset + 2 * i], tuned)["msprt"]
        effect = run_effect(rngs[offset + 2 * i + 1], tuned, params.effects[0], tau)
        sensitivity.append({"tau": tau, "null_fpr": null_fpr, **{k: effect[k] for k in ("msprt_power", "mean_stop_n")}})
    return {
        "parameters": {**asdict(params), "max_n": params.max_n, "min_samples": st.MIN_SEQUENTIAL_SAMPLES},
        "null": null,
        "continuous_null": continuous,
        "effects": effects,
        "tau_sensitivity": sensitivity,
        "seconds": time.perf_counter() - started,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    defaults = Params()
    parser.add_argument("--experiments", type=int, default=defaults.experiments)
    parser.add_argument("--looks", type=int, default=defaults.looks)
    parser.add_argument("--per-look", type=int, default=defaults.per_look)
    parser.add_argument("--continuous-n", type=int, default=defaults.continuous_n)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", type=Path, default=REPORTS)
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    params = Params(
        experiments=args.experiments,
        looks=args.looks,
        per_look=args.per_look,
        continuous_n=args.continuous_n,
        seed=args.seed,
    )
    print("parameters:", json.dumps(asdict(params)))
    results = simulate(params)
    paths = report.write(results, args.out, plot_figure=not args.no_plot)
    print(paths[1].read_text())
    print(*paths, sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
