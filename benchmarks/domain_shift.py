"""How much the demo's domain shift hurts: a source-only model against a target-only one.

Trains on the current pipeline outputs (run `dvc repro` first), three seeds each, and prints the
target test MAE (label units) and Spearman. The source-only model never sees a target label: its
outputs are read in the source domain's label scale, and it keeps its last epoch.
    python benchmarks/domain_shift.py
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import stats

from dareg import params
from dareg.data import load_split, unscale
from dareg.io import read_json
from dareg.models import build_model
from dareg.params import Regime
from dareg.train import fit, predict

SPLITS = (("source", "source"), ("target_train", "target"), ("target_val", "target"),
          ("target_test", "target"))


def main() -> None:
    p = params.load()
    runs = {"source_only": (Regime({"source": 16}, {"supervised": 1.0}), "source"),
            "no_source": (p.regimes["no_source"], "target")}
    print(f"{'task':<11} {'trained on':<12} {'MAE per seed':<26} {'Spearman per seed'}")
    for task in ("age", "popularity"):
        splits_dir, cache_dir = Path(f"data/splits/{task}"), Path(f"data/cache/{task}")
        scaling = read_json(splits_dir / "scaling.json")
        data = {n: load_split(cache_dir, splits_dir, n, scaling[d]) for n, d in SPLITS}
        test = data["target_test"]
        truth = unscale(test.labels, scaling["target"]) * scaling["per_label"]
        for name, (regime, out_domain) in runs.items():
            maes, rhos = [], []
            for seed in range(3):
                model = build_model(p.model, test.images.shape[1], seed)
                fit(model, data, regime, replace(p.train, seed=seed), p.losses,
                    lambda m: 0.0, lambda epoch, values: None, desc=f"{task} {name}")
                pred = unscale(predict(model, test.images, "cpu"), scaling[out_domain])
                pred = pred * scaling["per_label"]
                maes.append(f"{np.mean(np.abs(pred - truth)):.2f}")
                rhos.append(f"{stats.spearmanr(truth, pred)[0]:.2f}")
            print(f"{task:<11} {name:<12} {' '.join(maes):<26} {' '.join(rhos)}", flush=True)


if __name__ == "__main__":
    main()
