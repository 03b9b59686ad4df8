"""Training throughput of EfficientNet-Lite0 on this CPU: what the fine-tuning recipe was chosen from.

Writes ``benchmarks/reports/training_throughput.{md,json}``: images/s for the whole network
(forward + backward, fp32 and bf16-mixed), the frozen trunk (forward only, what the feature cache
costs) and the trainable tail on stored features (forward + backward), all in one run.

Usage: python benchmarks/training_throughput.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from training.modules.lite0_net import build_classifier, split

REPORTS = Path(__file__).resolve().parent / "reports"


def images_per_s(step: Callable[[], None], batch: int, repeats: int) -> float:
    """Best-of-``repeats`` rate after two warm-up steps (oneDNN picks its kernels on the first)."""
    step()
    step()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return batch / best


def measure(repeats: int) -> list[dict[str, object]]:
    model = build_classifier(200).to(memory_format=torch.channels_last)
    rows: list[dict[str, object]] = []

    def train_step(net: torch.nn.Module, x: torch.Tensor, bf16: bool) -> Callable[[], None]:
        params = [p for p in net.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=0.0)

        def step() -> None:
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = net(x)
            out.float().sum().backward()

        return step

    images = torch.randn(32, 3, 224, 224).to(memory_format=torch.channels_last)
    model.train()
    for bf16 in (False, True):
        rate = images_per_s(train_step(model, images, bf16), 32, repeats)
        rows.append(
            {"part": "whole network", "pass": "forward + backward", "bf16": bf16, "batch": 32, "images_per_s": rate}
        )
    trunk, tail = split(model, 4)
    assert trunk is not None
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        rate = images_per_s(lambda: trunk(images), 32, repeats)
    rows.append(
        {"part": "stem..blocks[4] (frozen)", "pass": "forward", "bf16": True, "batch": 32, "images_per_s": rate}
    )
    features = torch.randn(128, 112, 14, 14).to(memory_format=torch.channels_last)
    tail.train()
    for bf16 in (False, True):
        rate = images_per_s(train_step(tail, features, bf16), 128, repeats)
        rows.append(
            {
                "part": "blocks[5..6] + head (from stored maps)",
                "pass": "forward + backward",
                "bf16": bf16,
                "batch": 128,
                "images_per_s": rate,
            }
        )
    return rows


def write(rows: Sequence[dict[str, object]], threads: int) -> None:
    REPORTS.mkdir(exist_ok=True)
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
    }
    (REPORTS / "training_throughput.json").write_text(json.dumps({"meta": meta, "rows": list(rows)}, indent=2) + "\n")
    lines = [
        "# Training throughput: EfficientNet-Lite0, 224 px, this CPU",
        "",
        f"{meta['date']}, {meta['cores']} cores, {threads} torch threads, torch {meta['torch']}, "
        f"load average at the end {', '.join(f'{x:.2f}' for x in meta['load_average'])}. Channels-last; best of "
        "the timed repeats after two warm-up steps. Made by `benchmarks/training_throughput.py`.",
        "",
        "| part | pass | bf16-mixed | batch | images/s |",
        "|---|---|---|---|---|",
        *(
            f"| {r['part']} | {r['pass']} | {'yes' if r['bf16'] else 'no'} | {r['batch']} | {r['images_per_s']:.1f} |"
            for r in rows
        ),
        "",
        "One epoch of the 50,000-image train subset end to end costs 50,000 / (whole network rate);",
        "with the feature cache it costs one trunk pass per stored view, once, then 50,000 / (tail rate)",
        "per epoch (docs/adr/0006-fine-tune-on-a-feature-cache.md).",
        "",
    ]
    (REPORTS / "training_throughput.md").write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    write(measure(args.repeats), args.threads)
    print(REPORTS / "training_throughput.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
