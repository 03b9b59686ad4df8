"""Where a report came from: the git commit of the working tree that made it, and for a release, where its weights
came from (the training run, the run it started from, or the releases a soup averaged)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from services.models.specs.lite0 import finetuned_dir


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the current directory, or None outside a repository (or without git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def _trained_on_cache(model: dict[str, Any]) -> bool:
    """Whether a run trained on stored features (``model``: the run's ``model`` config section)."""
    return bool(model.get("feature_cache", True)) and model["freeze_through"] >= 0


def _fine_tune_recipe(model: dict[str, Any], cached: bool) -> str:
    """What a fine-tune froze, trained and started from, in words (``model``: the run's ``model`` config section)."""
    trained = model["freeze_through"]
    recipe = "stem, " if trained < 0 else f"stem and blocks[0..{trained}] frozen"
    if trained >= 0:
        recipe += " (feature cache), " if cached else ", "
    recipe += f"blocks[{trained + 1}..6], head conv and "
    if model.get("init_from"):
        recipe += f"the 200-class head trained, starting from the weights of {model['init_from']}"
    else:
        recipe += "a new 200-class head (initialised from the ImageNet rows of the same wnids) trained"
    return recipe + ("; BatchNorm statistics frozen" if model.get("freeze_norms") else "")


def run_origin(config: dict[str, Any], summary: dict[str, Any], artifacts_dir: Path) -> dict[str, Any]:
    """What ``metrics.json`` says of where the weights come from: a training run, or a soup of releases.

    Returns:
        ``data`` (the training data), ``source``, ``note`` (a metric note), ``training`` (the recipe section, with
        the ``earlier_stage`` a run started from), ``command`` and ``early_layers_kept`` (whether the stem and the
        first blocks kept their ImageNet weights, which the card's limitations say).
    """
    if "soup" in config:
        soup, command = config["soup"], summary.get("command", "python -m training.soup")
        parts = ", ".join(f"{v} x {w:g}" for v, w in zip(soup["releases"], soup["weights"], strict=True))
        ingredients = {
            version: json.loads((artifacts_dir / finetuned_dir(version) / "metrics.json").read_text())
            for version in soup["releases"]
        }
        served = "; ".join(
            f"{v} {m['metrics']['fp32']['top1']:.4f} FP32, {m['metrics']['int8']['top1']:.4f} INT8"
            for v, m in ingredients.items()
        )
        return {
            "data": "none of its own: the average of releases "
            + " and ".join(soup["releases"])
            + ", each fine-tuned on Tiny-ImageNet-200 train (the first 250 images of each class)",
            "source": f"weight average of releases {parts} by `{command}`, released by `python -m training.release`",
            "note": f"The releases averaged, on the same val split (served top-1): {served}.",
            "training": {
                "recipe": f"weight average (a model soup) of releases {parts}: every conv with its folded "
                "BatchNorm, the head conv and the 200-class head averaged; no training of its own",
                "ingredients": {v: m["training"] for v, m in ingredients.items()},
            },
            "command": f"{command} && python -m training.release --run runs/{summary.get('name', '')}",
            "early_layers_kept": all(
                any("early layers keep" in line for line in m.get("limitations", [])) for m in ingredients.values()
            ),
        }
    model = config["model"]
    cached = _trained_on_cache(model)
    views = config["data"]["views"]
    name = summary.get("name", "")
    train = f"python -m training.train --config training/configs/{name}.yaml"
    command = "make train && make release"  # training/configs/lite0_tiny_imagenet.yaml
    if name != "lite0_tiny_imagenet":
        command = f"{train} && python -m training.release --run runs/{name}"
    stage = earlier_stage(model.get("init_from"))
    if stage is not None:
        command = f"python -m training.train --config training/configs/{stage['name']}.yaml && {command}"
    seen = f"{views} stored views per image (the plain one and {views - 1} augmented)" if cached else None
    return {
        "data": "Tiny-ImageNet-200 train, the first 250 images of each class (50,000), "
        + (seen or "augmented afresh every epoch"),
        "source": f"fine-tuned by `{train}`, released by `python -m training.release`",
        "note": f"Validation during training ({'stored features, bf16 trunk' if cached else 'bf16'}): "
        f"{summary.get('val_metrics_cached_features', {}).get('val/acc', 'n/a')} top-1.",
        "training": {**training_section(config, summary), **({"earlier_stage": stage} if stage is not None else {})},
        "command": command,
        "early_layers_kept": model["freeze_through"] >= 0,
    }


def earlier_stage(init_from: str | None) -> dict[str, Any] | None:
    """The training run whose weights a run started from (``model.init_from``), as its release records it.

    None when the run started from ImageNet, or from weights that are not a training run's (a soup's folder holds a
    ``soup`` section instead of a training config).
    """
    if not init_from:
        return None
    folder = Path(init_from) if Path(init_from).is_dir() else Path(init_from).parent
    if not (folder / "config.yaml").is_file() or not (folder / "summary.json").is_file():
        return None
    config = yaml.safe_load((folder / "config.yaml").read_text())
    if "soup" in config:
        return None
    summary = json.loads((folder / "summary.json").read_text())
    return {
        "name": config["name"],
        **training_section(config, summary),
        "val_top1_after": summary.get("val_metrics_cached_features", {}).get("val/acc"),
    }


def training_section(config: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """How a training run trained: recipe, schedule and speed (a run folder's ``config.yaml`` and ``summary.json``)."""
    return {
        "recipe": _fine_tune_recipe(config["model"], _trained_on_cache(config["model"])),
        "image_size": config["data"]["image_size"],
        "epochs": config["trainer"]["epochs"],
        "batch_size": config["data"]["batch_size"],
        "optimizer": f"AdamW lr {config['optim']['lr']}, weight decay {config['optim']['weight_decay']}",
        "schedule": f"{config['optim']['warmup_steps']} warm-up steps, then {config['optim']['schedule']}",
        "label_smoothing": config["optim"]["label_smoothing"],
        "precision": config["trainer"]["precision"],
        "train_images_per_s": summary.get("train_images_per_s"),
        "wall_clock_s": summary.get("wall_clock_s"),
        "hardware": f"CPU, {summary.get('threads')} threads (shared with other jobs during the run)",
    }
