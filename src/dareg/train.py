"""One training loop for every regime: a regime says which streams feed a batch and how each named
loss term is weighed. The supervised term covers labeled samples only. Runs on the CPU, one GPU,
or several processes under torchrun (each takes an equal slice of the same global batch)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dareg import checkpoint, losses
from dareg.data import Split, Stream, to_input
from dareg.distributed import gather, world
from dareg.params import Losses, ParamsError, Regime, Train

TARGET_STREAMS = ("target_labeled", "target_unlabeled")
LABELED_STREAMS = ("source", "target_labeled")
# Which split feeds each stream a regime can draw from.
STREAM_SPLITS = {"source": "source", "target_labeled": "target_train",
                 "target_unlabeled": "target_unlabeled"}
# The regime weight each logged term is weighed by: `mse` weighs the head's supervised loss.
TERM_WEIGHT = {"ce": "mse"}


def pick_device(choice: str) -> torch.device:
    """`auto`: CUDA when present, else CPU."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def draw_batch(regime: Regime, streams: dict[str, Stream]) -> tuple[np.ndarray, dict, dict]:
    """The global batch: images (B, H, W, 3) in stream order, counts per stream, and labels of
    the labeled streams only (an unlabeled stream's labels never leave it)."""
    images, counts, labels = [], {}, {}
    for name, count in regime.batch.items():
        if count:
            x, y = streams[name].take(count)
            images.append(x)
            counts[name] = count
            if name in LABELED_STREAMS:
                labels[name] = torch.from_numpy(y)
    return np.concatenate(images), counts, labels


def loss_terms(pred, feat, logits, counts: dict, labels: dict, head: nn.Module, regime: Regime,
               cfg: Losses) -> dict[str, torch.Tensor]:
    """Every loss term the regime weighs, from the global batch's predictions (B,), features
    (B, d) and logits (B, K) or None, split by `counts` in stream order."""
    def by_stream(t):
        return dict(zip(counts, t.split(list(counts.values()))))

    labeled = [n for n in counts if n in LABELED_STREAMS]
    pred_by, feat_by = by_stream(pred), by_stream(feat)
    pick = (lambda d: torch.cat([d[n] for n in labeled]))
    terms = head.loss_terms(pick(pred_by), None if logits is None else pick(by_stream(logits)),
                            torch.cat([labels[n] for n in labeled]).to(pred.device))
    wants = {k for k, w in regime.weights.items() if w and k != "mse"}
    if wants:
        target = [n for n in counts if n in TARGET_STREAMS]
        f_s, f_t = feat_by["source"], torch.cat([feat_by[n] for n in target])
        bws = losses.bandwidths(f_s, f_t, cfg.bandwidth, cfg.scales)
        if "mmd" in wants:
            terms["mmd"] = losses.mmd(f_s, f_t, bws, cfg.mmd_estimator == "unbiased")
        if "smoothing" in wants:
            y_t = torch.cat([pred_by[n] for n in target])
            terms["smoothing"] = losses.smoothing(f_s, f_t, pred_by["source"], y_t, bws)
    return terms


def forward(model: nn.Module, images: np.ndarray, device: torch.device):
    """(pred, features, logits) of this rank's slice of `images`, gathered across ranks in order;
    bf16 autocast and channels_last on CUDA."""
    rank, size = world()
    share = len(images) // size
    x = to_input(images[rank * share:(rank + 1) * share], device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        pred, feat, logits = model(x, with_logits=True)
    return gather(pred.float()), gather(feat.float()), None if logits is None else gather(logits)


@torch.no_grad()
def infer(model: nn.Module, images: np.ndarray, device, batch_size: int = 256
          ) -> tuple[np.ndarray, torch.Tensor]:
    """One eval-mode pass over uint8 images (N, H, W, 3): predictions in the scaled label range
    (N,) and the features (N, feature_dim), float32 on the CPU."""
    model.eval()
    device = torch.device(device)
    preds, feats = [], []
    for i in range(0, len(images), batch_size):
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            pred, feat = model(to_input(images[i:i + batch_size], device))[:2]
        preds.append(pred.float().cpu())
        feats.append(feat.float().cpu())
    if not preds:
        return np.zeros(0, np.float32), torch.zeros(0, 0)
    return torch.cat(preds).numpy(), torch.cat(feats)


def predict(model: nn.Module, images: np.ndarray, device, batch_size: int = 256) -> np.ndarray:
    """Predictions in the scaled label range for uint8 images (N, H, W, 3), in eval mode."""
    return infer(model, images, device, batch_size)[0]


def epoch_lrs(cfg: Train, epoch: int) -> tuple[float, float]:
    """(backbone, head) learning rates: lr / 10^(epoch // lr_step_epochs); the backbone's times
    backbone_lr_scale, and 0 while frozen (its first freeze_backbone_epochs epochs)."""
    lr = cfg.lr * 0.1 ** (epoch // cfg.lr_step_epochs if cfg.lr_step_epochs else 0)
    frozen = epoch < cfg.freeze_backbone_epochs
    return (0.0 if frozen else lr * cfg.backbone_lr_scale), lr


def make_optimizer(model: nn.Module, cfg: Train) -> torch.optim.Optimizer:
    """Adam or SGD (with momentum) over two groups, backbone then head; weight decay on both."""
    groups = [{"params": list(model.backbone.parameters())},
              {"params": list(model.head.parameters())}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_one_epoch(model, optimizer, streams, regime, loss_cfg, device, steps: int,
                    desc: str) -> dict[str, float]:
    """`steps` optimizer steps; returns each term's mean and the weighted total."""
    model.train()
    head = getattr(model, "module", model).head
    sums: dict[str, float] = {}
    for _ in tqdm(range(steps), desc=desc, unit="step", leave=False, disable=world()[0] > 0):
        images, counts, labels = draw_batch(regime, streams)
        terms = loss_terms(*forward(model, images, device), counts, labels, head, regime, loss_cfg)
        total = sum(regime.weights.get(TERM_WEIGHT.get(k, k), 0.0) * v for k, v in terms.items())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        for k, v in {**terms, "total": total}.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
    return {k: v / steps for k, v in sums.items()}


def labeled_training_labels(splits: dict[str, Split], regime: Regime) -> np.ndarray:
    """The scaled labels of every labeled split the regime draws (what DEX bins are fitted on)."""
    return np.concatenate([splits[STREAM_SPLITS[n]].labels for n in LABELED_STREAMS
                           if regime.batch.get(n)])


def fit(model: nn.Module, splits: dict[str, Split], regime: Regime, cfg: Train, loss_cfg: Losses,
        validate: Callable[[nn.Module], float], log: Callable[[int, dict], None],
        desc: str = "train", resume: Path | None = None) -> dict:
    """Train for cfg.epochs (or until `patience` epochs bring no better validation MAE); keep the
    weights with the lowest target-validation error. `resume`: a state file written after every
    epoch and picked up if present (delete it when the run is done). Returns the best epoch's
    record (val_mae, epoch, state) with the logged `history` of every epoch."""
    device = pick_device(cfg.device) if world()[1] == 1 else _ddp_device(cfg)
    if sum(regime.batch.values()) % world()[1]:
        raise ParamsError(f"regime batch of {sum(regime.batch.values())} images does not split "
                          f"evenly over {world()[1]} processes; change train.processes or "
                          f"the regime's batch")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model.head.fit_labels(labeled_training_labels(splits, regime))
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    streams = {n: Stream(splits[STREAM_SPLITS[n]], rng) for n in regime.batch if regime.batch[n]}
    optimizer = make_optimizer(model, cfg)
    run = {"epoch": 0, "best": {"val_mae": float("inf")}, "stale": 0, "history": []}
    if resume is not None and resume.exists():
        run = checkpoint.restore_state(resume, model, optimizer, streams, rng)
        for epoch, values in enumerate(run["history"]):
            log(epoch, values)
    trained = _wrap(model, device)
    for epoch in range(run["epoch"], cfg.epochs):
        if cfg.patience and run["stale"] >= cfg.patience:
            break
        for group, lr in zip(optimizer.param_groups, epoch_lrs(cfg, epoch)):
            group["lr"] = lr
        means = train_one_epoch(trained, optimizer, streams, regime, loss_cfg, device,
                                cfg.steps_per_epoch, f"{desc} epoch {epoch + 1}/{cfg.epochs}")
        values = {**{f"train/{k}": v for k, v in means.items()}, "val/mae": validate(model),
                  "lr": optimizer.param_groups[1]["lr"],
                  "lr_backbone": optimizer.param_groups[0]["lr"]}
        log(epoch, values)
        run = next_run(run, epoch, values, model)
        if resume is not None and world()[0] == 0:
            checkpoint.save_state(resume, run, model, optimizer, streams, rng)
    return {**run["best"], "history": run["history"]}


def next_run(run: dict, epoch: int, values: dict, model: nn.Module) -> dict:
    """The run record after `epoch`: its history, the best epoch so far (with a copy of its
    weights) and how many epochs have passed without a better validation MAE."""
    better = values["val/mae"] < run["best"]["val_mae"]
    best = ({"val_mae": values["val/mae"], "epoch": epoch + 1,
             "state": copy.deepcopy(model.state_dict())} if better else run["best"])
    return {"epoch": epoch + 1, "stale": 0 if better else run["stale"] + 1,
            "history": [*run["history"], values], "best": best}


def _ddp_device(cfg: Train) -> torch.device:
    device = pick_device(cfg.device)
    return torch.device("cuda", torch.cuda.current_device()) if device.type == "cuda" else device


def _wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel under torchrun (gradients averaged over ranks), else the model."""
    if world()[1] == 1:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model,
                                   device_ids=[device.index] if device.type == "cuda" else None)
