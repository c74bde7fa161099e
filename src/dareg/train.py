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

from dareg import checkpoint, losses, progress
from dareg.data import Images, Split, Stream, concat, to_device, to_input
from dareg.distributed import gather, world
from dareg.errors import DataError
from dareg.models import batchnorm_layers, reestimate_batchnorm
from dareg.params import LABELED_STREAMS, STREAMS, SUPERVISED, Losses, ParamsError, Regime, Train

TARGET_STREAMS = ("target_labeled", "target_unlabeled")
# Which split feeds each stream a regime can draw from.
STREAM_SPLITS = {"source": "source", "target_labeled": "target_train",
                 "target_unlabeled": "target_unlabeled"}
HEAD_TERMS = ("mse", "ce")  # the head's supervised loss terms, weighed by `supervised`


class TrainingError(DataError):
    """Training that cannot go on (a loss that is no longer finite); names the epoch and term."""


def pick_device(choice: str) -> torch.device:
    """`auto`: CUDA when present, else CPU."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ParamsError("train.device is cuda but torch sees no CUDA device here; set "
                          "train.device: auto (or cpu)")
    return torch.device(choice)


def describe_device(device: torch.device | str) -> str:
    """What metrics record as their device: `cpu`, or `cuda (NVIDIA H200)`."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on `device`; on CUDA in channels_last, which the tensor cores' convolutions
    want (inputs follow in `forward`). Returns the model."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def autocast(device: torch.device, precision: str = "bf16"):
    """bf16 autocast on CUDA unless precision is fp32; float32 on the CPU."""
    return torch.autocast(device.type, torch.bfloat16,
                          enabled=device.type == "cuda" and precision == "bf16")


def draw_batch(regime: Regime, streams: dict[str, Stream]) -> tuple[Images, dict, dict]:
    """The global batch: images (B, H, W, 3) in the order source, target_labeled,
    target_unlabeled (whatever order params list them in), counts per stream, and labels of the
    labeled streams only (an unlabeled stream's labels never leave it)."""
    images, counts, labels = [], {}, {}
    for name in STREAMS:
        count = regime.batch.get(name, 0)
        if count:
            x, y = streams[name].take(count)
            images.append(x)
            counts[name] = count
            if name in LABELED_STREAMS:
                labels[name] = torch.from_numpy(y)
    return concat(images), counts, labels


def domain_groups(counts: dict[str, int], regime: Regime) -> list[int] | None:
    """AdaBN: the batch as [source images, target images] (streams are in that order), each
    normalized by its own BatchNorm statistics; None: one group."""
    if not regime.adabn:
        return None
    source = counts.get("source", 0)
    return [g for g in (source, sum(counts.values()) - source) if g]


def loss_terms(pred, feat, logits, counts: dict, labels: dict, head: nn.Module, regime: Regime,
               ctx: losses.TermContext) -> dict[str, torch.Tensor]:
    """Every loss term the regime weighs, from the global batch's predictions (B, K), features
    (B, d) and logits (B, bins) or None, split by `counts` in stream order: the head's supervised
    terms on the labeled streams, then each alignment term from the registry on source features
    against target (labeled and unlabeled) features."""
    def by_stream(t):
        return dict(zip(counts, t.split(list(counts.values()))))

    labeled = [n for n in counts if n in LABELED_STREAMS]
    pred_by, feat_by = by_stream(pred), by_stream(feat)
    pick = (lambda d: torch.cat([d[n] for n in labeled]))
    terms = head.loss_terms(pick(pred_by), None if logits is None else pick(by_stream(logits)),
                            torch.cat([labels[n] for n in labeled]).to(pred.device))
    if regime.alignment_terms:
        target = [n for n in counts if n in TARGET_STREAMS]
        f_s, f_t = feat_by["source"], torch.cat([feat_by[n] for n in target])
        y_s, y_t = pred_by["source"], torch.cat([pred_by[n] for n in target])
        for name in regime.alignment_terms:
            terms[name] = losses.TERMS[name].fn(f_s, f_t, y_s, y_t, ctx)
    return terms


def weighted_total(terms: dict[str, torch.Tensor], regime: Regime) -> torch.Tensor:
    """sum_t w_t * term_t: the head's terms weighed by `supervised`, the others by their own name."""
    return sum(regime.weights.get(SUPERVISED if k in HEAD_TERMS else k, 0.0) * v
               for k, v in terms.items())


def forward(model: nn.Module, images: Images, device: torch.device,
            groups: list[int] | None = None, precision: str = "bf16"):
    """(pred (B, K), features, logits) of the global batch `images`: this rank runs its equal share of
    each group (AdaBN's domains; one group by default) and the results are gathered across ranks
    back into the batch's order; bf16 autocast and channels_last on CUDA."""
    rank, size = world()
    groups = groups or [len(images)]
    starts = np.cumsum([0, *groups[:-1]])
    mine = [images[s + rank * (g // size):s + (rank + 1) * (g // size)] for s, g in zip(starts, groups)]
    x = to_input(concat(mine), device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device, precision):
        pred, feat, logits = model(x, with_logits=True,
                                   domains=[g // size for g in groups] if len(groups) > 1 else None)
    outputs = [pred.float(), feat.float(), None if logits is None else logits.float()]
    return tuple(None if t is None else _batch_order(gather(t), groups, size) for t in outputs)


def _batch_order(gathered: torch.Tensor, groups: list[int], size: int) -> torch.Tensor:
    """Rank-major (rank 0's groups, rank 1's groups, ...) to the global batch's group-major order."""
    if size == 1 or len(groups) == 1:
        return gathered
    parts = gathered.split([g // size for g in groups] * size)
    return torch.cat([parts[r * len(groups) + i] for i in range(len(groups)) for r in range(size)])


@torch.no_grad()
def infer(model: nn.Module, images: Images, device, batch_size: int = 256,
          precision: str = "bf16") -> tuple[np.ndarray, torch.Tensor]:
    """One eval-mode pass over uint8 images (N, H, W, 3): predictions in the scaled label range
    (N, K) and the features (N, feature_dim), float32 on the CPU."""
    model.eval()
    device = torch.device(device)
    preds, feats = [], []
    for i in range(0, len(images), batch_size):
        x = to_input(images[i:i + batch_size], device)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            pred, feat = model(x)[:2]
        preds.append(pred.float().cpu())
        feats.append(feat.float().cpu())
    if not preds:
        return np.zeros((0, getattr(model, "outputs", 1)), np.float32), torch.zeros(0, 0)
    return torch.cat(preds).numpy(), torch.cat(feats)


def predict(model: nn.Module, images: Images, device, batch_size: int = 256,
            precision: str = "bf16") -> np.ndarray:
    """Predictions (N, K) in the scaled label range for uint8 images (N, H, W, 3), in eval mode."""
    return infer(model, images, device, batch_size, precision)[0]


def step_lrs(cfg: Train, epoch: int, step: int) -> tuple[float, float]:
    """(backbone, head) learning rates at optimizer step `step` (0-based, counted over the whole
    run) of `epoch`: lr_schedule step: lr / 10^(epoch // lr_step_epochs) (DEX; constant when
    lr_step_epochs is 0); inverse: lr * (1 + lr_gamma * step)^-lr_power (the DA papers'). The
    backbone's is times backbone_lr_scale, and 0 while frozen (its first freeze_backbone_epochs)."""
    if cfg.lr_schedule == "inverse":
        lr = cfg.lr * (1.0 + cfg.lr_gamma * step) ** -cfg.lr_power
    else:
        lr = cfg.lr * 0.1 ** (epoch // cfg.lr_step_epochs if cfg.lr_step_epochs else 0)
    frozen = epoch < cfg.freeze_backbone_epochs
    return (0.0 if frozen else lr * cfg.backbone_lr_scale), lr


def make_optimizer(model: nn.Module, cfg: Train) -> torch.optim.Optimizer:
    """Adam or SGD (with momentum, Nesterov's if asked) over the groups backbone, head and (when
    built) the adapters, which learn at the head's rate; weight decay on all."""
    groups = [{"params": list(model.backbone.parameters())},
              {"params": list(model.head.parameters())}]
    if len(model.adapters):
        groups.append({"params": list(model.adapters.parameters())})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def set_lrs(optimizer: torch.optim.Optimizer, cfg: Train, epoch: int, step: int) -> None:
    backbone, head = step_lrs(cfg, epoch, step)
    for group, lr in zip(optimizer.param_groups, (backbone, head, head)):
        group["lr"] = lr


def batch_terms(model, batch, regime: Regime, loss_cfg: Losses, device, progress: float,
                precision: str = "bf16", step: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The loss terms of one global batch (images, counts, labels as draw_batch gives them) and
    their weighted total; `progress` in [0, 1]: how far training is (DANN's ramp); `step`: the
    optimizer step, counted over the run (DD's warm start)."""
    images, counts, labels = batch
    net = getattr(model, "module", model)
    net = getattr(net, "_orig_mod", net)  # torch.compile's wrapper
    ctx = losses.TermContext(loss_cfg, progress, net.adapters, step)
    outputs = forward(model, images, device, domain_groups(counts, regime), precision)
    terms = loss_terms(*outputs, counts, labels, net.head, regime, ctx)
    return terms, weighted_total(terms, regime)


def step(model, optimizer, batch, regime: Regime, loss_cfg: Losses, device, progress: float,
         precision: str = "bf16", where: str = "train", check: bool = True, index: int = 0
         ) -> dict[str, torch.Tensor]:
    """One optimizer step on `batch` (the run's step `index`); returns the terms and `total`
    (detached). With `check`, a loss that is not finite stops training before the step, with a
    TrainingError naming `where` and the term (a host-device synchronization: train_one_epoch
    checks per epoch on CUDA)."""
    terms, total = batch_terms(model, batch, regime, loss_cfg, device, progress, precision, index)
    if check:
        stop_if_not_finite({**terms, "total": total}, where)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return {k: v.detach() for k, v in {**terms, "total": total}.items()}


def stop_if_not_finite(values: dict, where: str) -> None:
    """A TrainingError naming the first term (or the total) that is NaN or infinite."""
    floats = {k: float(torch.as_tensor(v).detach()) for k, v in values.items()}
    bad = next((k for k, v in floats.items() if not np.isfinite(v)), None)
    if bad is not None:
        raise TrainingError(f"{where}: loss term {bad} is {floats[bad]}; lower its weight "
                            f"or train.lr")


def train_one_epoch(model, optimizer, streams, regime, loss_cfg, device, steps: int,
                    desc: str, done: float = 0.0, share: float = 0.0,
                    precision: str = "bf16", first: int = 0,
                    lrs: Callable[[int], None] = lambda index: None) -> dict[str, float]:
    """`steps` optimizer steps, the run's steps first, first + 1, ...; returns each term's mean
    and the weighted total. `done` and `share`: the part of training before this epoch and this
    epoch's part (DANN's ramp); `lrs(index)` sets the learning rates of the run's step `index`.
    On the CPU each step's loss is checked before its update; on CUDA the sums stay on the
    device and are checked when the epoch ends (no synchronization per step), before anything is
    saved."""
    model.train()
    check = torch.device(device).type != "cuda"
    sums: dict[str, torch.Tensor] = {}
    for i in progress.bar(range(steps), desc=desc, unit="step", leave=False, disable=world()[0] > 0):
        lrs(first + i)
        values = step(model, optimizer, draw_batch(regime, streams), regime, loss_cfg, device,
                      done + share * i / steps, precision, f"{desc}, step {i + 1}", check,
                      first + i)
        for k, v in values.items():
            sums[k] = sums[k] + v if k in sums else v.clone()
    means = {k: float(v) / steps for k, v in sums.items()}
    stop_if_not_finite(means, desc)
    return means


def labeled_training_labels(splits: dict[str, Split], regime: Regime) -> np.ndarray:
    """The scaled labels (N, K) of every labeled split the regime draws (what DEX bins are
    fitted on)."""
    return np.concatenate([splits[STREAM_SPLITS[n]].labels for n in LABELED_STREAMS
                           if regime.batch.get(n)])


def target_batches(splits: dict[str, Split], device, batch_size: int = 64,
                   streams: tuple[str, ...] = TARGET_STREAMS):
    """The target training images of `streams` (labeled, then unlabeled), as float batches of
    `batch_size` (the last may be smaller): AdaBN's sample of the target domain, the images
    the regime draws from it."""
    parts = [splits[STREAM_SPLITS[name]].images for name in TARGET_STREAMS if name in streams]
    sizes = np.cumsum([0, *map(len, parts)])
    for start in range(0, sizes[-1], batch_size):
        stop = min(start + batch_size, sizes[-1])
        chunk = [part[max(start - lo, 0):max(min(stop - lo, len(part)), 0)]
                 for part, lo in zip(parts, sizes[:-1])]
        yield to_input(concat([c for c in chunk if len(c)]), device)


def prepare(model: nn.Module, splits: dict[str, Split], regime: Regime, cfg: Train,
            loss_cfg: Losses) -> None:
    """Fit the head's label-dependent buffers and build the adaptation modules the regime's
    terms need (seeded by cfg.seed); refuse AdaBN on a network without BatchNorm."""
    if regime.adabn and not batchnorm_layers(model):
        raise ParamsError("a regime with adabn: true needs BatchNorm in the network; set "
                          "model.norm: batch")
    model.head.fit_labels(labeled_training_labels(splits, regime))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model.adapters.update(losses.build_modules(regime.alignment_terms, model.feature_dim,
                                                   loss_cfg, model.outputs))


def fit(model: nn.Module, splits: dict[str, Split], regime: Regime, cfg: Train, loss_cfg: Losses,
        validate: Callable[[nn.Module], float], log: Callable[[int, dict], None],
        desc: str = "train", resume: Path | None = None) -> dict:
    """Train for cfg.epochs (or until `patience` epochs bring no better validation MAE); keep the
    weights with the lowest target-validation error. With regime.adabn the BatchNorm statistics
    are re-estimated on the target images the regime draws before each validation, so the kept
    weights carry the target's statistics. `resume`: a state file written after every epoch and picked
    up if present (delete it when the run is done). Returns the best epoch's record (val_mae,
    epoch, state) with the logged `history` of every epoch and the `last` epoch's record (the
    papers select nothing: they report the end of a fixed schedule)."""
    device = pick_device(cfg.device) if world()[1] == 1 else _ddp_device(cfg)
    for count in regime.batch.values():
        if count % world()[1]:
            raise ParamsError(f"regime batch {regime.batch} does not split evenly over "
                              f"{world()[1]} processes; change train.processes or the regime's batch")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    prepare(model, splits, regime, cfg, loss_cfg)
    place(model, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest
        used = {STREAM_SPLITS[n] for n in regime.batch if regime.batch[n]}
        splits = {**splits, **to_device({k: splits[k] for k in used}, device)}
    streams = {n: Stream(splits[STREAM_SPLITS[n]], rng) for n in regime.batch if regime.batch[n]}
    drawn_target = tuple(n for n in TARGET_STREAMS if n in streams)  # AdaBN's target images
    optimizer = make_optimizer(model, cfg)
    run = {"epoch": 0, "best": {"val_mae": float("inf")}, "stale": 0, "history": []}
    if resume is not None and resume.exists():
        run = checkpoint.restore_state(resume, model, optimizer, streams, rng)
        for epoch, values in enumerate(run["history"]):
            log(epoch, values)
    trained = _wrap(model, device)
    if cfg.compile:
        trained = torch.compile(trained)
    for epoch in range(run["epoch"], cfg.epochs):
        if cfg.patience and run["stale"] >= cfg.patience:
            break
        means = train_one_epoch(trained, optimizer, streams, regime, loss_cfg, device,
                                cfg.steps_per_epoch, f"{desc} epoch {epoch + 1}/{cfg.epochs}",
                                epoch / cfg.epochs, 1 / cfg.epochs, cfg.precision,
                                epoch * cfg.steps_per_epoch,
                                lambda index: set_lrs(optimizer, cfg, epoch, index))
        if regime.adabn:
            reestimate_batchnorm(model, target_batches(splits, device, streams=drawn_target))
        values = {**{f"train/{k}": v for k, v in means.items()}, "val/mae": validate(model),
                  "lr": optimizer.param_groups[1]["lr"],
                  "lr_backbone": optimizer.param_groups[0]["lr"]}
        log(epoch, values)
        run = next_run(run, epoch, values, model)
        if resume is not None and world()[0] == 0:
            checkpoint.save_state(resume, run, model, optimizer, streams, rng)
    if "epoch" not in run["best"]:
        raise TrainingError(f"{desc}: no epoch gave a finite target-validation MAE (last: "
                            f"{run['history'][-1]['val/mae'] if run['history'] else 'none'}); "
                            f"check train.epochs and the labels")
    last = {"val_mae": run["history"][-1]["val/mae"], "epoch": run["epoch"],
            "state": copy.deepcopy(model.state_dict())}
    return {**run["best"], "history": run["history"], "last": last}


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
