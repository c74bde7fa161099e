"""One training loop for every regime: a regime says which streams feed a batch and how each named
loss term is weighed. The squared error is taken over labeled samples only."""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from dareg import losses
from dareg.data import Split, Stream, to_input
from dareg.params import Losses, Regime, Train

TARGET_STREAMS = ("target_labeled", "target_unlabeled")
# Which split feeds each stream a regime can draw from.
STREAM_SPLITS = {"source": "source", "target_labeled": "target_train",
                 "target_unlabeled": "target_unlabeled"}


def pick_device(choice: str) -> torch.device:
    """`auto`: CUDA when present, else CPU."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def draw_batch(regime: Regime, streams: dict[str, Stream], device) -> dict[str, tuple]:
    """Per stream: (inputs, labels or None), as many images as the regime asks for."""
    batch = {}
    for name, count in regime.batch.items():
        if count:
            images, labels = streams[name].take(count)
            y = None if labels is None else torch.from_numpy(labels).to(device)
            batch[name] = (to_input(images, device), y)
    return batch


def loss_terms(model: nn.Module, batch: dict[str, tuple], regime: Regime, cfg: Losses
               ) -> dict[str, torch.Tensor]:
    """Every loss term the regime weighs, from one forward pass over the whole batch."""
    names = list(batch)
    pred, feat = model(torch.cat([batch[n][0] for n in names]))
    counts = [len(batch[n][0]) for n in names]
    pred_by, feat_by = dict(zip(names, pred.split(counts))), dict(zip(names, feat.split(counts)))
    labeled = [n for n in names if batch[n][1] is not None and n != "target_unlabeled"]
    terms = {"mse": torch.mean((torch.cat([pred_by[n] for n in labeled])
                                - torch.cat([batch[n][1] for n in labeled])) ** 2)}
    wants = {k for k, w in regime.weights.items() if w and k != "mse"}
    if wants:
        target = [n for n in names if n in TARGET_STREAMS]
        f_s, f_t = feat_by["source"], torch.cat([feat_by[n] for n in target])
        bws = losses.bandwidths(f_s, f_t, cfg.bandwidth, cfg.scales)
        if "mmd" in wants:
            terms["mmd"] = losses.mmd(f_s, f_t, bws, cfg.mmd_estimator == "unbiased")
        if "smoothing" in wants:
            y_t = torch.cat([pred_by[n] for n in target])
            terms["smoothing"] = losses.smoothing(f_s, f_t, pred_by["source"], y_t, bws)
    return terms


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, device, batch_size: int = 256) -> np.ndarray:
    """Sigmoid outputs for uint8 images (N, H, W, 3), in eval mode."""
    model.eval()
    outputs = [model(to_input(images[i:i + batch_size], device))[0].float().cpu()
               for i in range(0, len(images), batch_size)]
    return torch.cat(outputs).numpy() if outputs else np.zeros(0, np.float32)


def train_one_epoch(model, optimizer, streams, regime, cfg: Train, loss_cfg, device,
                    desc: str) -> dict[str, float]:
    """`cfg.steps_per_epoch` optimizer steps; returns each term's mean and the weighted total."""
    model.train()
    sums: dict[str, float] = {}
    for _ in tqdm(range(cfg.steps_per_epoch), desc=desc, unit="step", leave=False):
        terms = loss_terms(model, draw_batch(regime, streams, device), regime, loss_cfg)
        total = sum(regime.weights.get(k, 0.0) * v for k, v in terms.items())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        for k, v in {**terms, "total": total}.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
    return {k: v / cfg.steps_per_epoch for k, v in sums.items()}


def fit(model: nn.Module, splits: dict[str, Split], regime: Regime, cfg: Train, loss_cfg: Losses,
        validate: Callable[[nn.Module], float], log: Callable[[int, dict], None],
        desc: str = "train") -> dict:
    """Train for cfg.epochs; keep the weights with the lowest target-validation error."""
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model.to(device)
    streams = {name: Stream(splits[STREAM_SPLITS[name]], rng) for name in regime.batch if regime.batch[name]}
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best = {"val_mae": float("inf")}
    for epoch in range(cfg.epochs):
        means = train_one_epoch(model, optimizer, streams, regime, cfg, loss_cfg, device,
                                f"{desc} epoch {epoch + 1}/{cfg.epochs}")
        val_mae = validate(model)
        log(epoch, {**{f"train/{k}": v for k, v in means.items()}, "val/mae": val_mae,
                    "lr": optimizer.param_groups[0]["lr"]})
        if val_mae < best["val_mae"]:
            best = {"val_mae": val_mae, "epoch": epoch + 1,
                    "state": copy.deepcopy(model.state_dict())}
    return best
