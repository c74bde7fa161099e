"""Checkpoints are plain dicts that carry everything needed to predict: config, input size and
normalization, label scaling, the weights (DEX bin edges and means are buffers among them).
Also the resume state a training run saves after every epoch."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dareg import params as params_mod
from dareg.data import factors
from dareg.errors import DataError
from dareg.io import atomic_path
from dareg.models import build_model, input_norm


def make(state: dict, model_params: params_mod.Model, image_size: int, scaling: dict,
         meta: dict, last_state: dict | None = None) -> dict:
    """A checkpoint dict: the chosen (best-validation) weights, and the last epoch's where given;
    `meta` holds task, regime, epochs, validation errors and training config. The adapters
    (modules only training needs, such as DANN's discriminator) are left out."""
    def predictor(weights: dict) -> dict:
        return {k: v for k, v in weights.items() if not k.startswith("adapters.")}

    last = {} if last_state is None else {"last_state": predictor(last_state)}
    return {"format": "dareg-checkpoint-1", "model_state": predictor(state), **last,
            "model": asdict(model_params), "image_size": image_size,
            "input_norm": input_norm(model_params), "scaling": scaling, **meta}


def save(checkpoint: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        _save(checkpoint, tmp)


def _save(obj: dict, path: Path) -> None:
    """torch.save through an open file: given a path, torch names the archive's records after the
    file (here a random temporary name), so equal checkpoints would differ byte for byte and DVC
    would see new models on every run; a file object gets the fixed name `archive`."""
    with open(path, "wb") as f:
        torch.save(obj, f)


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


def seed_files(folder: Path) -> list[Path]:
    """A trained regime's checkpoints, folder/seed-{seed}.pt, in seed order."""
    found = {int(m[1]): p for p in Path(folder).glob("seed-*.pt")
             if (m := re.fullmatch(r"seed-(\d+)\.pt", p.name))}
    if not found:
        raise DataError(f"{folder}: no seed-<n>.pt checkpoints; run `dvc repro` to train them")
    return [found[seed] for seed in sorted(found)]


def same_origin(records: list[dict], paths: list[Path], scaling: dict, origin: Path) -> None:
    """Refuse to pool seeds trained for another task or regime, or on labels scaled otherwise than
    `scaling` (read from `origin`, the splits the checkpoints are evaluated on)."""
    for record, path in zip(records, paths):
        if record["scaling"] != scaling:
            raise DataError(f"{path}: trained on labels scaled otherwise than {origin} says; "
                            f"retrain it with `dvc repro` (its train stage)")
        if (record["task"], record["regime"]) != (records[0]["task"], records[0]["regime"]):
            raise DataError(f"{path}: trained for {record['task']}/{record['regime']}, unlike "
                            f"{paths[0]}; keep one regime's seeds in one folder")


def restore_model(checkpoint: dict, weights: str = "model_state") -> nn.Module:
    """The network of a checkpoint with its chosen weights (or `last_state`, the last epoch's),
    in eval mode (no ImageNet file needed: the checkpoint's weights replace them)."""
    if weights not in checkpoint:
        raise DataError(f"this checkpoint holds no {weights} (written before dareg kept the last "
                        f"epoch's weights); retrain it with `dvc repro`")
    model = build_model(params_mod.Model(**checkpoint["model"]), checkpoint["image_size"],
                        pretrained=False, outputs=len(factors(checkpoint["scaling"])))
    model.load_state_dict(checkpoint[weights])
    return model.eval()


def resume_key(config: dict, files: list[Path]) -> str:
    """sha256 over the training config (JSON, sorted keys) and the bytes of every input file:
    a resume state made with other params or other data has another key, so it is never used."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for path in sorted(files):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:16]


def save_state(path: Path, run: dict, model, optimizer, streams: dict, rng) -> None:
    """Everything a killed run needs to go on exactly: weights, optimizer, random states (the
    CPU's, numpy's and, once CUDA is in use, every GPU's), the streams' positions, the best
    epoch so far and the logged history."""
    state = {**run, "model_state": model.state_dict(), "optimizer": optimizer.state_dict(),
             "torch_rng": torch.get_rng_state(), "numpy_rng": json.dumps(rng.bit_generator.state),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
             "streams": {n: {"order": torch.from_numpy(s.state()["order"]), "pos": s.state()["pos"]}
                         for n, s in streams.items()}}
    with atomic_path(path) as tmp:
        _save(state, tmp)


def restore_state(path: Path, model, optimizer, streams: dict, rng) -> dict:
    """Load a state written by `save_state` into the live objects; returns the run record."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model_state"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") and torch.cuda.is_available():  # dropout on a GPU draws from these
        torch.cuda.set_rng_state_all(state["cuda_rng"][:torch.cuda.device_count()])
    rng.bit_generator.state = json.loads(state["numpy_rng"])
    for name, stream in streams.items():
        stream.restore({"order": np.asarray(state["streams"][name]["order"]),
                        "pos": state["streams"][name]["pos"]})
    return {k: state[k] for k in ("epoch", "best", "stale", "history")}
