"""Sweep the `da` regime's MMD and smoothing weights on one task of the current pipeline outputs.

Selection uses the target validation split only; test MAE is printed for the record, not to choose.
Needs `dvc repro` to have built data/splits/<task> and data/cache/<task>. Example:
    python benchmarks/da_weight_sweep.py age 0,0 0.001,0.001 0.1,0 1000,100
Each spec is `mmd,smoothing[,seed]`. Also prints the MMD between source and target-test features
(median-heuristic kernel, unbiased), to show whether alignment happened.
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dareg import losses, params
from dareg.data import load_split, to_input, unscale
from dareg.io import read_json
from dareg.models import build_model
from dareg.train import fit, predict

SPLITS = (("source", "source"), ("target_train", "target"), ("target_unlabeled", "target"),
          ("target_val", "target"), ("target_test", "target"))


def main(task: str, specs: list[str]) -> None:
    p = params.load()
    splits_dir, cache_dir = Path(f"data/splits/{task}"), Path(f"data/cache/{task}")
    scaling = read_json(splits_dir / "scaling.json")
    data = {n: load_split(cache_dir, splits_dir, n, scaling[d]) for n, d in SPLITS}

    def mae(model, split) -> float:
        pred = unscale(predict(model, split.images, "cpu"), scaling["target"])
        truth = unscale(split.labels, scaling["target"])
        return float(np.mean(np.abs(pred - truth))) * scaling["per_label"]

    print(f"{'mmd,smoothing':>16} {'val MAE':>8} {'test MAE':>9} {'feature MMD':>12} {'s':>4}")
    for spec in specs:
        mmd_w, smooth_w, seed = (*(float(x) for x in spec.split(",")[:2]), p.train.seed)
        if spec.count(",") == 2:
            seed = int(spec.split(",")[2])
        regime = replace(p.regimes["da"], weights={"mse": 1.0, "mmd": mmd_w, "smoothing": smooth_w})
        start = time.perf_counter()
        model = build_model(p.model, data["source"].images.shape[1], seed)
        best = fit(model, data, regime, p.train, p.losses, lambda m: mae(m, data["target_val"]),
                   lambda epoch, values: None, desc=spec)
        model.load_state_dict(best["state"])
        with torch.no_grad():
            f_s = model(to_input(data["source"].images[:200], "cpu"))[1]
            f_t = model(to_input(data["target_test"].images[:200], "cpu"))[1]
            gap = float(losses.mmd(f_s, f_t, losses.bandwidths(f_s, f_t, "median", [1.0])))
        print(f"{spec:>16} {best['val_mae']:8.3f} {mae(model, data['target_test']):9.3f} "
              f"{gap:12.4f} {time.perf_counter() - start:4.0f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
