"""Fine-tune EfficientNet-Lite0 on Tiny-ImageNet-200 with PyTorch Lightning.

Usage::

    python -m training.train --config training/configs/lite0_tiny_imagenet.yaml
    python -m training.train --config ... --set trainer.epochs=2 --set optim.lr=1e-3
    python -m training.train --config ... --resume last      # or a checkpoint path

Writes ``runs/<name>/``: ``config.yaml`` (the resolved config), ``checkpoints/``
(``best.ckpt`` by ``val/acc`` and ``last.ckpt``), ``logs/version_<n>/metrics.csv``
(every logged metric, one folder per invocation), ``model.pt`` (the whole timm model with the best weights, for
``python -m training.export finetuned``), ``labels.json`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader

from training.config import TrainConfig
from training.data.augment import eval_transform, train_transform
from training.data.datasets import FeatureDataset, ImageDataset
from training.data.tiny_imagenet import Sample, TinyImageNet, locate
from training.features import build_cache, cache_key
from training.modules.classifier import ClassifierModule
from training.modules.lite0_net import (
    FrozenNorms,
    FrozenTrunkNet,
    Trunk,
    build_classifier,
    load_weights,
    split,
    weights_digest,
)
from training.settings import TrainingSettings

log = logging.getLogger(__name__)


class Throughput(pl.Callback):
    """Logs ``train/images_per_s`` for each epoch (wall clock, data loading included)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.images = 0
        self.history: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started, self.images = time.perf_counter(), 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.images += len(batch[1])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rate = self.images / max(1e-9, time.perf_counter() - self.started)
        self.history.append(rate)
        pl_module.log("train/images_per_s", rate)


def dataset_root(config: TrainConfig, settings: TrainingSettings) -> Path:
    if config.data.root is not None:
        return config.data.root
    return locate(settings.data_dir / "datasets", settings.datasets_mirror_dir)


def loaders(
    config: TrainConfig,
    trunk: Trunk | None,
    train: Sequence[Sample],
    val: Sequence[Sample],
    cache_root: Path,
) -> tuple[DataLoader, DataLoader]:
    """Train and val loaders: over stored trunk features, or over images."""
    data, seed = config.data, config.trainer.seed
    if trunk is not None and config.model.feature_cache:
        common: dict[str, Any] = {"image_size": data.image_size, "strength": data.augment_strength, "seed": seed}
        key = {"through": config.model.freeze_through, **common}
        if config.model.init_from is not None:  # the trunk's weights are not ImageNet's: stored maps of those differ
            key["init_from"] = weights_digest(config.model.init_from)
        sets = []
        for split_name, samples, views in (("train", train, data.views), ("val", val, 1)):
            folder = cache_root / f"{split_name}-{cache_key(samples, views=views, **key)}"
            features, labels = build_cache(trunk, samples, folder, views=views, num_workers=data.num_workers, **common)
            sets.append(FeatureDataset(features, labels, random_view=split_name == "train", seed=seed))
        workers = 0  # the maps live in the page cache; worker processes would only add copies
        return (
            DataLoader(sets[0], batch_size=data.batch_size, shuffle=True, num_workers=workers, drop_last=True),
            DataLoader(sets[1], batch_size=data.batch_size * 2, num_workers=workers),
        )
    augment = train_transform(data.image_size, seed=seed, strength=data.augment_strength)
    persistent = data.num_workers > 0
    return (
        DataLoader(
            ImageDataset(train, augment),
            batch_size=data.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=data.num_workers,
            persistent_workers=persistent,
        ),
        DataLoader(
            ImageDataset(val, eval_transform(data.image_size)),
            batch_size=data.batch_size * 2,
            num_workers=data.num_workers,
            persistent_workers=persistent,
        ),
    )


def resolve_resume(resume: str | None, run_dir: Path) -> str | None:
    if resume in (None, ""):
        return None
    path = run_dir / "checkpoints" / "last.ckpt" if resume == "last" else Path(resume)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint to resume from at {path}")
    return str(path)


def run(config: TrainConfig, resume: str | None = None, settings: TrainingSettings | None = None) -> dict[str, Any]:
    """Train as ``config`` says; returns the summary also written to ``summary.json``."""
    settings = settings or TrainingSettings()
    if config.trainer.threads:
        torch.set_num_threads(config.trainer.threads)
    pl.seed_everything(config.trainer.seed, workers=True)
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config.to_yaml())

    dataset = TinyImageNet(dataset_root(config, settings))
    train = dataset.train(config.data.train_per_class)
    val = dataset.val()[: config.data.val_limit]
    wnids = dataset.wnids if config.model.init_head_from_imagenet else None
    model = build_classifier(dataset.num_classes, wnids, drop_rate=config.model.drop_rate)
    if config.model.init_from is not None:
        load_weights(model, config.model.init_from)
    trunk, net = split(model, config.model.freeze_through)
    train_loader, val_loader = loaders(config, trunk, train, val, settings.data_dir / "cache" / "features")
    if trunk is not None and not config.model.feature_cache:
        net = FrozenTrunkNet(trunk, net)
    if config.model.freeze_norms:
        net = FrozenNorms(net)

    net.train()  # load_lite0 returns an eval-mode model; Lightning keeps the modes it finds (the trunk stays frozen)
    module = ClassifierModule(net, dataset.num_classes, config.optim, channels_last=config.trainer.channels_last)
    best = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor="val/acc", mode="max", save_last=True
    )
    throughput = Throughput()
    trainer = pl.Trainer(
        max_epochs=config.trainer.epochs,
        precision=config.trainer.precision,  # type: ignore[arg-type]
        accelerator=config.trainer.accelerator,
        devices=config.trainer.devices,
        gradient_clip_val=config.optim.grad_clip,
        fast_dev_run=config.trainer.fast_dev_run,
        limit_train_batches=config.trainer.limit_train_batches,
        limit_val_batches=config.trainer.limit_val_batches,
        log_every_n_steps=config.trainer.log_every_n_steps,
        logger=CSVLogger(str(run_dir), name="logs"),  # logs/version_<n>/: a resume never overwrites
        callbacks=[best, LearningRateMonitor("step"), TQDMProgressBar(refresh_rate=10), throughput],
        deterministic=False,
        default_root_dir=str(run_dir),
    )
    started = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=resolve_resume(resume, run_dir))
    elapsed = time.perf_counter() - started

    if best.best_model_path:
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    final = trainer.validate(module, val_loader, verbose=False)[0] if not config.trainer.fast_dev_run else {}
    model.to(memory_format=torch.contiguous_format)  # model.pt and the export as NCHW, whatever trained
    return write_outputs(run_dir, model.eval(), dataset, config, final, throughput.history, elapsed, best)


def write_outputs(
    run_dir: Path,
    model: nn.Module,
    dataset: TinyImageNet,
    config: TrainConfig,
    final: Mapping[str, float],
    rates: list[float],
    elapsed: float,
    best: ModelCheckpoint,
) -> dict[str, Any]:
    torch.save(model.state_dict(), run_dir / "model.pt")
    words = dataset.words()
    labels = [
        {"id": i, "wnid": wnid, "name": name, "words": words[wnid]}
        for i, (wnid, name) in enumerate(zip(dataset.wnids, dataset.class_names(), strict=True))
    ]
    (run_dir / "labels.json").write_text(json.dumps(labels, indent=1))
    val_metrics = {k: round(float(v), 5) for k, v in final.items()}
    summary = {
        "name": config.name,
        "val_metrics_cached_features": val_metrics,
        "best_checkpoint": Path(best.best_model_path).name if best.best_model_path else None,
        "train_images_per_s": [round(r, 1) for r in rates],
        "wall_clock_s": round(elapsed, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "config": config.model_dump(mode="json"),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("training finished", extra={"run_dir": str(run_dir), **val_metrics})
    return summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--resume", help="'last' or a checkpoint path")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    summary = run(TrainConfig.from_yaml(args.config, args.overrides), resume=args.resume)
    print(json.dumps(summary["val_metrics_cached_features"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
