"""The CUDA paths: a bf16 + channels_last step of every regime against float32, SyncBatchNorm and
DDP under torchrun with NCCL, resume, predict and evaluate. Marked `cuda`; skipped where CUDA is
absent. `make gpu-check` runs them on a GPU (benchmarks/gpu_check.py).

DAREG_CUDA_TESTS_ON=cpu runs them on the CPU instead (gloo for DDP; no bf16, which dareg uses on
CUDA only), so that the tests themselves are checked before a GPU is at hand: the suite does
that through the check's --cpu-smoke (tests/test_gpu_check.py).

They need no conftest (the GPU machine has no DVC): run with `pytest --noconftest -m cuda`.
Only torch, numpy, pandas, Pillow and PyYAML are imported.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dareg import checkpoint, distributed, params, train  # noqa: E402
from dareg.data import Split, Stream, to_device  # noqa: E402
from dareg.models import build_model  # noqa: E402

ON = os.environ.get("DAREG_CUDA_TESTS_ON", "cuda")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(ON == "cuda" and not torch.cuda.is_available(),
                                 reason="no CUDA device here; `make gpu-check` on a GPU machine runs these")]
DEVICE = torch.device(ON)

def with_src() -> str:
    """PYTHONPATH for a subprocess: src/ first, whatever was there kept."""
    return os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
# bf16 keeps 8 bits of mantissa (relative rounding error about 0.4% per operation); through 7
# convolutions and a kernel mean the loss terms stay within 5% + 5e-3 of float32's.
RTOL, ATOL = 0.05, 5e-3
# Resume on CUDA is not bit-identical (cuDNN's algorithms and atomics reorder float sums): the
# resumed run's per-epoch losses stay within 2% of the uninterrupted run's and its weights within
# 1e-3 on average (Adam moves each weight by at most about lr = 1e-3 a step).
RESUME_LOSS_RTOL, RESUME_WEIGHT_MEAN_ABS = 0.02, 1e-3


def base_params(**model) -> params.Params:
    p = params.parse(yaml.safe_load((ROOT / "params.yaml").read_text()))
    return replace(p, model=replace(p.model, **{"width": 0.125, "dropout": 0.0, **model}),
                   train=replace(p.train, device=ON, epochs=3, steps_per_epoch=2))


def make_splits(n: int = 24, size: int = 64, seed: int = 0) -> dict[str, Split]:
    rng = np.random.default_rng(seed)

    def one(labeled=True):
        return Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                     rng.random(n, dtype=np.float32) if labeled else None)
    return {"source": one(), "target_train": one(), "target_unlabeled": one(False),
            "target_val": one(), "target_test": one()}


def mae_on(split: Split):
    return lambda net: float(np.mean(np.abs(train.predict(net, split.images, DEVICE) - split.labels)))


CASES = [(name, "sigmoid") for name in sorted(base_params().regimes)] + [("no_da", "dex"), ("da", "dex")]


@pytest.mark.parametrize("name,head", CASES)
def test_a_step_of_every_regime_in_bf16_is_finite_and_close_to_float32(name, head):
    p = base_params(head=head, bins=5)
    regime, loss_cfg = p.regimes[name], p.regime_losses(name)
    data = to_device(make_splits(), DEVICE)
    model = build_model(p.model, 64, seed=0, pretrained=False)
    train.prepare(model, data, regime, p.train, loss_cfg)
    train.place(model, DEVICE)
    if DEVICE.type == "cuda":
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    streams = {s: Stream(data[train.STREAM_SPLITS[s]], rng) for s in regime.batch if regime.batch[s]}
    batch = train.draw_batch(regime, streams)
    model.train()
    seen = {}
    for precision in ("fp32", "bf16"):
        terms, total = train.batch_terms(model, batch, regime, loss_cfg, DEVICE, 0.5, precision)
        seen[precision] = {k: float(v.detach()) for k, v in terms.items()}, float(total.detach())
    (f32, t32), (b16, t16) = seen["fp32"], seen["bf16"]
    assert np.isfinite(t16) and all(np.isfinite(v) for v in b16.values()), b16
    for k in f32:
        assert abs(b16[k] - f32[k]) <= RTOL * abs(f32[k]) + ATOL, (k, b16[k], f32[k])
    weight = {k: regime.weights.get("supervised" if k in train.HEAD_TERMS else k, 0.0) for k in f32}
    assert abs(t16 - t32) <= sum(weight[k] * (RTOL * abs(f32[k]) + ATOL) for k in f32), (t16, t32)
    optimizer = train.make_optimizer(model, p.train)
    train.step(model, optimizer, batch, regime, loss_cfg, DEVICE, 0.5, "bf16")
    grads = [q.grad for q in model.parameters() if q.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def ddp_worker(out: Path) -> None:
    """Run by torchrun: SyncBatchNorm + DDP explicitly (fit wraps only for 2+ processes), then
    the library's own fit on `da`; each rank writes what it saw to out/rank{rank}.json."""
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    p = base_params(norm="batch")
    device = distributed.setup(torch.device(ON))
    rank, size = distributed.world()
    seen = {"backend": torch.distributed.get_backend(), "world": size}
    model = build_model(p.model, 64, seed=0, pretrained=False)
    if device.type == "cuda":
        synced = nn.SyncBatchNorm.convert_sync_batchnorm(model).to(device)
        seen["sync_bn_layers"] = sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())
        ddp = DistributedDataParallel(synced, device_ids=[device.index])
        x = torch.rand(8, 3, 64, 64, device=device)
        ddp(x)[0].float().mean().backward()
        seen["sync_bn_grads_finite"] = all(bool(torch.isfinite(q.grad).all())
                                           for q in synced.parameters() if q.grad is not None)
    data = make_splits()
    curve = []
    model = build_model(p.model, 64, seed=0, pretrained=False)
    train.fit(model, data, p.regimes["da"], p.train, p.losses, mae_on(data["target_val"]),
              lambda e, v: curve.append(v["train/total"]))
    seen["curve"] = curve
    # parameters, not buffers: each rank's last forward updates its own BatchNorm statistics
    seen["checksum"] = float(sum(q.detach().double().abs().sum() for q in model.parameters()))
    (out / f"rank{rank}.json").write_text(json.dumps(seen))
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("processes", [1, 2])
def test_ddp_under_torchrun(processes, tmp_path):
    if ON == "cuda" and processes > torch.cuda.device_count():
        pytest.skip(f"{processes} processes need {processes} GPUs; this machine has "
                    f"{torch.cuda.device_count()}")
    env = {**os.environ, "PYTHONPATH": with_src(), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             f"--nproc_per_node={processes}", __file__, "ddp-worker", str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(processes)]
    assert {r["backend"] for r in ranks} == {"nccl" if ON == "cuda" else "gloo"}
    assert all(r["world"] == processes and np.isfinite(r["curve"]).all() for r in ranks)
    if ON == "cuda":
        assert all(r["sync_bn_layers"] > 0 and r["sync_bn_grads_finite"] for r in ranks)
    assert len({round(r["checksum"], 6) for r in ranks}) == 1  # DDP keeps the replicas equal


def test_resume_matches_an_uninterrupted_run(tmp_path):
    p = base_params(norm="batch", dropout=0.25)  # dropout: the device's random state matters
    cfg = replace(p.train, epochs=3, steps_per_epoch=3)
    regime = p.regimes["da_dann"]  # DANN: the adapters' state resumes too
    data = make_splits()
    val = mae_on(data["target_val"])

    def run(resume=None, stop_at=None):
        model, curve = build_model(p.model, 64, seed=0, pretrained=False), []

        def log(epoch, values):
            if epoch == stop_at:
                raise KeyboardInterrupt  # as a kill after the epoch before was saved
            curve.append(values["train/total"])
        try:
            train.fit(model, data, regime, cfg, p.regime_losses("da_dann"), val, log, resume=resume)
        except KeyboardInterrupt:
            return None, None
        return np.array(curve), torch.cat([t.flatten().float() for t in model.state_dict().values()])

    whole_curve, whole = run()
    state = tmp_path / "state.pt"
    assert run(resume=state, stop_at=2) == (None, None)
    saved = torch.load(state, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 2
    if DEVICE.type == "cuda":
        assert "cuda_rng" in saved and len(saved["cuda_rng"]) == torch.cuda.device_count()
    curve, weights = run(resume=state)
    np.testing.assert_allclose(curve, whole_curve, rtol=RESUME_LOSS_RTOL)
    assert float((weights - whole).abs().mean()) <= RESUME_WEIGHT_MEAN_ABS


def test_fit_with_train_compile():
    if DEVICE.type != "cuda":
        pytest.skip("torch.compile is checked on CUDA only (on the CPU inductor's C++ build is slow)")
    p = base_params()
    cfg = replace(p.train, compile=True, epochs=1, steps_per_epoch=3)
    data = make_splits()
    best = train.fit(build_model(p.model, 64, seed=0, pretrained=False), data, p.regimes["da"],
                     cfg, p.losses, mae_on(data["target_val"]), lambda e, v: None)
    assert np.isfinite(best["val_mae"])


def test_a_loss_that_turns_nan_stops_training_naming_the_term(monkeypatch):
    """On CUDA the check runs once an epoch (no synchronization per step), before any save."""
    from dareg import losses

    term = losses.TERMS["mmd"]
    monkeypatch.setitem(losses.TERMS, "mmd", replace(term, fn=lambda *a: term.fn(*a) * float("nan")))
    p = base_params()
    data = make_splits()
    with pytest.raises(train.TrainingError, match="epoch 1/3.*loss term mmd is nan"):
        train.fit(build_model(p.model, 64, seed=0, pretrained=False), data, p.regimes["da"],
                  p.train, p.losses, mae_on(data["target_val"]), lambda e, v: None)


def trained_checkpoint(tmp_path: Path, p: params.Params, data: dict) -> Path:
    """A briefly trained `da` checkpoint as runs.train_seed writes it."""
    cfg = replace(p.train, epochs=1, steps_per_epoch=2)
    model = build_model(p.model, 64, seed=0, pretrained=False)
    best = train.fit(model, data, p.regimes["da"], cfg, p.losses, mae_on(data["target_val"]),
                     lambda e, v: None)
    scaling = {"source": {"offset": 0.0, "scale": 1.0}, "target": {"offset": 0.0, "scale": 1.0},
               "unit": "years", "per_label": 101.0}
    meta = {"task": "age", "regime": "da", "epoch": best["epoch"], "val_mae": best["val_mae"],
            "last_epoch": best["last"]["epoch"], "last_val_mae": best["last"]["val_mae"],
            "history": best["history"], "train": asdict(cfg), "losses": asdict(p.losses),
            "regime_config": asdict(p.regimes["da"])}
    path = tmp_path / "models" / "age" / "da" / "seed-0.pt"
    path.parent.mkdir(parents=True)
    checkpoint.save(checkpoint.make(best["state"], p.model, 64, scaling, meta,
                                    best["last"]["state"]), path)
    (tmp_path / "scaling.json").write_text(json.dumps(scaling))
    return path


def test_predict_and_evaluate_on_the_device(tmp_path):
    from PIL import Image

    p = base_params()
    data = make_splits()
    ckpt = trained_checkpoint(tmp_path, p, data)
    env = {**os.environ, "PYTHONPATH": with_src()}
    images = tmp_path / "photos"
    images.mkdir()
    for i in range(3):
        Image.fromarray(data["target_test"].images[i]).save(images / f"{i}.jpg", quality=90)
    run = subprocess.run([sys.executable, "-m", "dareg.predict", str(ckpt), str(images), "--out",
                          str(tmp_path / "pred.csv"), "--device", ON],
                         env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    predicted = pd.read_csv(tmp_path / "pred.csv")["predicted"]
    assert len(predicted) == 3 and np.isfinite(predicted).all()

    # the evaluate stage, on a workspace of real-format files, with train.device = ON
    splits, cache = tmp_path / "data" / "splits" / "age", tmp_path / "data" / "cache" / "age"
    splits.mkdir(parents=True)
    cache.mkdir(parents=True)
    (splits / "scaling.json").write_text((tmp_path / "scaling.json").read_text())
    for name in ("source", "target_train", "target_test"):
        split = data[name]
        np.save(cache / f"{name}.npy", split.images)
        pd.DataFrame({"domain": "target", "image": [f"x/{i}.jpg" for i in range(len(split))],
                      "label": split.labels[:, 0]}).to_csv(splits / f"{name}.csv", index=False)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["device"] = ON
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    run = subprocess.run([sys.executable, str(ROOT / "stages" / "evaluate.py"), "--checkpoints",
                          str(ckpt.parent), "--splits", str(splits), "--cache", str(cache),
                          "--out", str(tmp_path / "m.json"), "--predictions", str(tmp_path / "p.csv")],
                         env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["device"] == train.describe_device(DEVICE) and np.isfinite(metrics["mae"])


if __name__ == "__main__" and sys.argv[1:2] == ["ddp-worker"]:
    ddp_worker(Path(sys.argv[2]))
