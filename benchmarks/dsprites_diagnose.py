"""Why an adaptation method does or does not transfer on a dSprites pair: for each regime at the
weights benchmarks/dsprites_sweep.json chose, one seed trained through the library's loop, then

- its best and last epoch's target-validation MAE;
- each alignment term's weighted size at the last epoch, beside the supervised loss's;
- the gradient each weighted term sends into the backbone, as a ratio to the supervised
  loss's (the norm over the backbone's parameters, mean over 8 fresh batches; a GRL term's
  gradient is the reversed one the backbone receives);
- the features of 300 source and 300 target-validation images: the held-out accuracy of a linear
  domain classifier (0.5: the domains are indistinguishable), the distance between the domain
  means in units of the features' spread, the target : source feature variance, and the
  prediction spread on the target relative to the labels' (collapse: well below 1).

Runs in a pair's copy made by `benchmarks/dsprites.py sweep --keep DIR` (test never loaded):
    python benchmarks/dsprites_diagnose.py --keep /tmp/dsb --pairs NC SC --log benchmarks/dsprites_diagnose.log
"""
from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

SAMPLE = 300  # images per domain for the feature statistics
GRAD_BATCHES = 8


def backbone_grad_norms(model, regime, loss_cfg, streams, step: int) -> dict[str, float]:
    """Mean over GRAD_BATCHES batches of ||d(w_t * term_t)/d backbone|| per term (supervised: the
    head's terms together), in training mode as the loop computes them."""
    import torch

    from dareg.train import HEAD_TERMS, batch_terms, draw_batch

    params = [p for p in model.backbone.parameters() if p.requires_grad]
    norms: dict[str, list[float]] = {}
    model.train()
    for _ in range(GRAD_BATCHES):
        terms, _ = batch_terms(model, draw_batch(regime, streams), regime, loss_cfg, torch.device("cpu"), 1.0,
                               "fp32", step)
        supervised = sum(v for k, v in terms.items() if k in HEAD_TERMS)
        parts = {"supervised": regime.weights.get("supervised", 0.0) * supervised,
                 **{k: regime.weights.get(k, 0.0) * v for k, v in terms.items() if k not in HEAD_TERMS}}
        for name, value in parts.items():
            grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
            norm = torch.sqrt(sum((g ** 2).sum() for g in grads if g is not None) + 0.0)
            norms.setdefault(name, []).append(float(norm))
    model.eval()
    return {k: float(np.mean(v)) for k, v in norms.items()}


def domain_accuracy(f_s, f_t, seed: int = 0) -> float:
    """Held-out accuracy of a logistic-regression domain classifier on standardized features
    (trained on half of each domain, scored on the other half)."""
    import torch

    x = torch.cat([f_s, f_t])
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = torch.cat([torch.zeros(len(f_s)), torch.ones(len(f_t))])
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, test = order[: len(x) // 2], order[len(x) // 2:]
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x[train] @ w + b, y[train])
        loss = loss + 1e-3 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((x[test] @ w + b > 0).float() == y[test]).float().mean())


def feature_stats(model, data: dict, scaling: dict) -> dict[str, float]:
    from dareg.train import infer

    pick = np.random.default_rng(0)
    src = data["source"].images[np.sort(pick.choice(len(data["source"]), SAMPLE, replace=False))]
    val = data["target_val"]
    _, f_s = infer(model, src, "cpu", precision="fp32")
    pred_t, f_t = infer(model, val.images[:SAMPLE], "cpu", precision="fp32")
    spread = float((f_s.var(0).sum() + f_t.var(0).sum()) / 2) ** 0.5
    return {"domain_acc": domain_accuracy(f_s, f_t),
            "mean_gap": float((f_s.mean(0) - f_t.mean(0)).norm()) / max(spread, 1e-12),
            "var_ratio": float(f_t.var(0).sum() / max(float(f_s.var(0).sum()), 1e-12)),
            "pred_spread": float(np.mean(pred_t.std(0) / np.maximum(val.labels[:SAMPLE].std(0), 1e-12)))}


def diagnose_job(job: tuple) -> dict:
    import torch

    from _runs import load_task, train_run
    from dareg.data import Stream
    from dareg.train import HEAD_TERMS, STREAM_SPLITS

    torch.set_num_threads(1)
    repo, pair, name, weights, losses, seed = job
    p, data, scaling = load_task(Path(repo), "dsprites")
    regime = replace(p.regimes[name], losses={**p.regimes[name].losses, **losses})
    regime = regime if weights is None else replace(regime, weights=weights)
    p = replace(p, regimes={**p.regimes, name: regime})
    r = train_run(p, regime, name, data, scaling, seed)
    if "error" in r:
        return {"pair": pair, "regime": name, "error": r["error"]}
    model, history = r["model"], r["history"]
    last = history[-1]
    loss_cfg = p.regime_losses(name)
    rng = np.random.default_rng(seed + 1)
    streams = {n: Stream(data[STREAM_SPLITS[n]], rng) for n in regime.batch if regime.batch[n]}
    steps = p.train.epochs * p.train.steps_per_epoch
    grads = backbone_grad_norms(model, regime, loss_cfg, streams, steps)
    weight = (lambda k: regime.weights.get("supervised" if k in HEAD_TERMS else k, 0.0))
    weighted = {k[len("train/"):]: weight(k[len("train/"):]) * v
                for k, v in last.items() if k.startswith("train/") and k != "train/total"}
    return {"pair": pair, "regime": name, "weights": regime.weights, "best_val": r["val_mae"],
            "best_epoch": r["epoch"], "last_val": last["val/mae"],
            "curve": [round(h["val/mae"], 4) for h in history],
            "terms_last": weighted,
            "grad_ratio": {k: v / max(grads.get("supervised", 0.0), 1e-12) for k, v in grads.items()
                           if k != "supervised"},
            "grad_supervised": grads.get("supervised"), **feature_stats(model, data, scaling)}


def markdown(rows: list[dict]) -> str:
    lines = ["| pair | regime | val MAE best (epoch) | last | term size : supervised | backbone grad : supervised "
             "| domain acc | mean gap | var t:s | pred spread |", "|" + "---|" * 10]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['pair']} | {r['regime']} | {r['error']} |" + " |" * 7)
            continue
        sup = sum(v for k, v in r["terms_last"].items() if k in ("mse", "ce")) or 1e-12
        size = ", ".join(f"{k} {v / sup:.2g}" for k, v in r["terms_last"].items() if k not in ("mse", "ce"))
        grad = ", ".join(f"{k} {v:.2g}" for k, v in r["grad_ratio"].items())
        lines.append(f"| {r['pair']} | {r['regime']} | {r['best_val']:.3f} ({r['best_epoch']}) | "
                     f"{r['last_val']:.3f} | {size or '-'} | {grad or '-'} | {r['domain_acc']:.2f} | "
                     f"{r['mean_gap']:.2f} | {r['var_ratio']:.2f} | {r['pred_spread']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, required=True, help="the pair copies of `dsprites.py sweep`")
    parser.add_argument("--pairs", nargs="+", default=["CN"])
    parser.add_argument("--weights", type=Path, default=ROOT / "benchmarks" / "dsprites_sweep.json")
    parser.add_argument("--regimes", nargs="+",
                        default=["source_only", "da", "da_coral", "da_rsd", "da_daregram", "da_dann",
                                 "da_adabn", "da_dd", "oracle"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--log", type=Path, default=ROOT / "benchmarks" / "dsprites_diagnose.log")
    args = parser.parse_args()
    sweep = json.loads(args.weights.read_text()) if args.weights.exists() else {}
    chosen, losses = sweep.get("chosen", {}), sweep.get("losses", {})
    jobs = [(str(args.keep / pair), pair, name, chosen.get(name), losses.get(name, {}), 0)
            for pair in args.pairs for name in args.regimes]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(diagnose_job, jobs))
    text = markdown(rows)
    print(text)
    args.log.write_text(f"$ python benchmarks/dsprites_diagnose.py --keep DIR --pairs {' '.join(args.pairs)}\n\n"
                        f"{text}\n")
    args.log.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
