"""The report of benchmarks/ab_simulation.py: Markdown, JSON and a two-panel plot of the rejection rates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NAME = "ab_simulation"


def _pct(r: dict[str, float]) -> str:
    return f"{100 * r['rate']:.1f} % [{100 * r['low']:.1f}, {100 * r['high']:.1f}]"


def markdown(results: dict[str, Any]) -> str:
    p = results["parameters"]
    null, continuous = results["null"], results["continuous_null"]
    lines = [
        "# A/B sequential test (mSPRT) versus peeking: simulation",
        "",
        f"{results.get('date', '')} - made by `benchmarks/ab_simulation.py` in {results['seconds']:.1f} s.",
        f"{p['experiments']} simulated experiments per scenario; accuracy feedback (Bernoulli) on two arms, a look",
        f"after every {p['per_look']} judgements per arm, {p['looks']} looks (up to {p['max_n']} per arm);",
        f"alpha = {p['alpha']}, mSPRT mixing sd tau = {p['tau']}, at least {p['min_samples']} judgements per arm",
        f"before the first look, seed {p['seed']}. Rates carry a 95 % Wilson interval (Monte Carlo uncertainty).",
        "",
        f"## No effect (both arms {p['p_control']}): how often a difference is ever declared",
        "",
        "| procedure | false-positive rate |",
        "|---|---|",
        f"| mSPRT, always-valid p <= alpha at any of the {p['looks']} looks | {_pct(null['msprt'])} |",
        f"| naive: fixed-horizon z-test at every one of the {p['looks']} looks | {_pct(null['naive_peeking'])} |",
        f"| one fixed-horizon z-test at {p['max_n']} per arm (the design it is valid for) | "
        f"{_pct(null['single_look_at_max_n'])} |",
        f"| mSPRT, continuous monitoring: a look after every pair, {continuous['looks_per_experiment']} looks | "
        f"{_pct(continuous['msprt'])} |",
        f"| naive z-test, continuous monitoring (from {p['min_samples']} per arm) | "
        f"{_pct(continuous['naive_peeking'])} |",
        "",
        f"## Real effects: power by {p['max_n']} per arm and the sample at which the mSPRT stops",
        "",
        "| control | treatment | mSPRT power | stopped the wrong way | mean stopping n per arm (unstopped = max) "
        "| median n of the stopped | one z-test at max n: power | fixed n for 80 % power "
        "| mSPRT power by the look at or below that n |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {e['p_control']} | {e['p_treatment']} | {_pct(e['msprt_power'])} | {e['wrong_direction']} | "
            f"{e['mean_stop_n']:.0f} | {_median(e)} | {_pct(e['fixed_power_at_max_n'])} | "
            f"{e['fixed_n_for_80_percent']} | {_pct(e['msprt_power_near_fixed_n'])} at "
            f"{e['msprt_power_near_fixed_n']['n']} |"
            for e in results["effects"]
        ),
        "",
        f"## Choice of tau (treatment {p['effects'][0]} against {p['p_control']})",
        "",
        "| tau | null false-positive rate | power | mean stopping n per arm |",
        "|---|---|---|---|",
        *(
            f"| {s['tau']} | {_pct(s['null_fpr'])} | {_pct(s['msprt_power'])} | {s['mean_stop_n']:.0f} |"
            for s in results["tau_sensitivity"]
        ),
        "",
        "The mSPRT keeps its false-positive rate under alpha however often it is looked at (it is conservative:",
        "the bound is Ville's inequality); peeking with a fixed-horizon test multiplies it. The price is sample: at",
        "the n a fixed design needs for 80 % power the mSPRT has less, and it stops on average later than that n.",
        "In exchange nobody fixes a sample size in advance, the result may be read at any time, and an effect larger",
        "than the one a fixed design was sized for stops the test early. `ab_simulation.png`: left,",
        "the cumulative false-positive rate by look under no effect; right, the cumulative rejection rate by look",
        "under each effect, mSPRT against one fixed-horizon z-test at that look alone.",
        "",
    ]
    return "\n".join(lines)


def _median(effect: dict[str, Any]) -> str:
    median = effect["median_stop_n_of_stopped"]
    return "-" if median is None else f"{median:.0f}"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    null = results["null"]["by_look"]
    n = null["n_per_arm"]
    alpha = results["parameters"]["alpha"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(n, null["naive_peeking"], "o-", label="naive z-test at every look")
    left.plot(n, null["msprt"], "s-", label="mSPRT (always valid)")
    left.axhline(alpha, color="grey", linestyle="--", label=f"alpha = {alpha}")
    left.set(title="No effect: P(a difference declared by look k)", xlabel="judgements per arm", ylabel="rate")
    left.legend(fontsize=8)
    for effect in results["effects"]:
        label = f"{effect['p_control']} vs {effect['p_treatment']}"
        (line,) = right.plot(n, effect["by_look"]["msprt"], "s-", label=f"mSPRT, {label}")
        right.plot(n, effect["by_look"]["fixed_single_look"], ":", color=line.get_color(), label=f"one z-test, {label}")
    right.set(title="Real effect: rejection rate by look", xlabel="judgements per arm", ylabel="power")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(results: dict[str, Any], out: Path, *, plot_figure: bool = True) -> list[Path]:
    """Write ``ab_simulation.{json,md}`` (and ``.png``) under ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    results = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), **results}
    paths = [out / f"{NAME}.json", out / f"{NAME}.md"]
    paths[0].write_text(json.dumps(results, indent=2) + "\n")
    paths[1].write_text(markdown(results))
    if plot_figure:
        paths.append(out / f"{NAME}.png")
        plot(results, paths[-1])
    return paths
