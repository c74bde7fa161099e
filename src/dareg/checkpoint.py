"""Checkpoints are plain dicts that carry everything needed to predict: config, input size and
normalization, label scaling and units, and the weights."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from dareg import params as params_mod
from dareg.data import INPUT_NORM
from dareg.errors import DataError
from dareg.io import atomic_path
from dareg.models import build_model


def make(state: dict, model_params: params_mod.Model, image_size: int, scaling: dict,
         meta: dict) -> dict:
    """A checkpoint dict; `meta` holds task, regime, epoch, validation error and training config."""
    return {"format": "dareg-checkpoint-1", "model_state": state, "model": asdict(model_params),
            "image_size": image_size, "input_norm": dict(INPUT_NORM), "scaling": scaling, **meta}


def save(checkpoint: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load(path: Path) -> dict:
    """Read a checkpoint written by `save`; a clear error for a missing or foreign file."""
    if not Path(path).exists():
        raise DataError(f"{path}: checkpoint not found; run `dvc repro` to train it")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file
        raise DataError(f"{path}: not a readable checkpoint ({err}); retrain it") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != "dareg-checkpoint-1":
        raise DataError(f"{path}: not a dareg checkpoint; expected one written by stages/train.py")
    return checkpoint


def restore_model(checkpoint: dict) -> nn.Module:
    """The network of a checkpoint, with its weights, in eval mode."""
    model = build_model(params_mod.Model(**checkpoint["model"]), checkpoint["image_size"])
    model.load_state_dict(checkpoint["model_state"])
    return model.eval()
