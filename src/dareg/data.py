"""Training data: the image cache and split labels as streams that a regime draws batches from."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dareg.errors import DataError
from dareg.columns import label_columns


@dataclass
class Split:
    """One split: uint8 images (N, H, W, 3), possibly memory-mapped (or a tensor on the training
    device, dareg.data.to_device), and scaled labels (N, K), one column per factor, or None
    (labels given as (N,) become (N, 1))."""

    images: np.ndarray | torch.Tensor
    labels: np.ndarray | None

    def __post_init__(self):
        if self.labels is not None and self.labels.ndim == 1:
            self.labels = self.labels[:, None]

    def __len__(self) -> int:
        return len(self.images)


def scale_labels(labels: np.ndarray, scaling: dict) -> np.ndarray:
    """Task labels (N, K) to the network's range: (label - offset) / scale, per factor (a number
    or a list of K)."""
    offset, scale = np.asarray(scaling["offset"]), np.asarray(scaling["scale"])
    return ((labels - offset) / scale).astype(np.float32)


def unscale(scaled: np.ndarray, scaling: dict) -> np.ndarray:
    """The network's outputs (N, K) back to task labels."""
    return scaled * np.asarray(scaling["scale"]) + np.asarray(scaling["offset"])


def factors(scaling: dict) -> list[str]:
    """The names of a task's label factors (its scaling.json); [""] for a single label."""
    return scaling.get("factors") or [""]


def load_split(cache_dir: Path, splits_dir: Path, name: str, scaling: dict | None,
               required: bool = False) -> Split:
    """Images from `cache_dir/name.npy`, labels (N, K) from `splits_dir/name.csv` (its `label`
    column or its label_<factor> columns) scaled by `scaling`. Labels must be finite; a
    `required` split must have rows (a DataError naming the file)."""
    images = np.load(cache_dir / f"{name}.npy", mmap_mode="r")
    csv = splits_dir / f"{name}.csv"
    table = pd.read_csv(csv)
    if len(table) != len(images):
        raise DataError(f"{cache_dir / name}.npy holds {len(images)} images but {csv} lists "
                        f"{len(table)}; rerun the cache stage (dvc repro)")
    if required and not len(table):
        raise DataError(f"{csv}: the {name} split is empty; raise its count under split.<task> "
                        f"in params.yaml (and split.val_fraction for target_val), then dvc repro")
    labels, columns = None, label_columns(table)
    if columns:
        raw = table[columns].to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(raw).all(1))
        if len(bad):
            shown = raw[bad[0], 0] if len(columns) == 1 else raw[bad[0]].tolist()
            raise DataError(f"{csv}: line {bad[0] + 2} has label {shown} ({len(bad)} rows not "
                            f"finite); fix the raw table, then rerun the labels stage "
                            f"(dvc repro)")
        if scaling is not None:
            labels = scale_labels(raw, scaling)
    return Split(images, labels)


Images = np.ndarray | torch.Tensor  # uint8 (N, H, W, 3): a (memory-mapped) array, or on a GPU

# On CUDA the uint8 training splits are moved to the GPU once when they take at most this share
# of its free memory (the original codebase's age splits at 128 px: about 0.4 GB); else they stay on the host,
# pinned, and each batch is copied without blocking.
DEVICE_CACHE_SHARE = 0.25


def to_input(images: Images, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) to float (N, 3, H, W) in [0, 1] on `device`; the model normalizes
    (dareg.models.Regressor), so each backbone gets the statistics it was trained with."""
    device = torch.device(device)
    if isinstance(images, torch.Tensor):
        x = images.to(device, non_blocking=True)
    else:
        x = torch.from_numpy(np.array(images, dtype=np.uint8))  # a copy: memmaps are read-only
        if device.type == "cuda":
            x = x.pin_memory()
        x = x.to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(255.0)  # NHWC -> NCHW


def concat(parts: list[Images]) -> Images:
    """np.concatenate or torch.cat, whichever the parts are."""
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)


def to_device(splits: dict[str, Split], device: torch.device) -> dict[str, Split]:
    """The splits as training reads them on `device`: on CUDA, the uint8 images moved to the GPU
    once (through pinned memory) when they fit in DEVICE_CACHE_SHARE of its free memory, else
    pinned on the host; on the CPU, unchanged (memory maps stay memory maps). Labels stay numpy."""
    if device.type != "cuda" or all(isinstance(s.images, torch.Tensor) for s in splits.values()):
        return splits
    total = sum(s.images.nbytes for s in splits.values())
    free = torch.cuda.mem_get_info(device)[0]
    place = ((lambda t: t.pin_memory().to(device, non_blocking=True)) if total <= DEVICE_CACHE_SHARE * free
             else (lambda t: t.pin_memory()))
    moved = {name: Split(place(torch.from_numpy(np.ascontiguousarray(s.images))), s.labels)
             for name, s in splits.items()}
    torch.cuda.synchronize(device)
    return moved


class Stream:
    """Endless reshuffled passes over one split: shorter streams simply cycle."""

    def __init__(self, split: Split, rng: np.random.Generator):
        if len(split) == 0:
            raise DataError("a regime draws from an empty split; raise its count under split.<task>")
        self.split, self.rng = split, rng
        self.order, self.pos = rng.permutation(len(split)), 0

    def take(self, count: int) -> tuple[np.ndarray, np.ndarray | None]:
        picked = []
        while count > 0:
            if self.pos == len(self.order):
                self.order, self.pos = self.rng.permutation(len(self.split)), 0
            chunk = self.order[self.pos:self.pos + count]
            picked.append(chunk)
            self.pos += len(chunk)
            count -= len(chunk)
        index = np.sort(np.concatenate(picked))  # sorted reads are kinder to a memory map
        labels = None if self.split.labels is None else self.split.labels[index]
        images = self.split.images
        if isinstance(images, torch.Tensor):  # on a GPU (or pinned): index there
            return images[torch.from_numpy(index).to(images.device)], labels
        return images[index], labels

    def state(self) -> dict:
        """Where the stream stands (the shared random generator is saved by its owner)."""
        return {"order": self.order.copy(), "pos": self.pos}

    def restore(self, state: dict) -> None:
        self.order, self.pos = np.asarray(state["order"]), int(state["pos"])
