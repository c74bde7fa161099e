"""make gpu-check: prove training on CUDA in one short call, and report what a user would ask.

On a machine with a CUDA GPU, from the source tree (no install, no DVC; torch, torchvision, numpy,
scipy, pandas, Pillow, tqdm, PyYAML and pytest are all it needs):

    PYTHONPATH=src python3 benchmarks/gpu_check.py            # or: make gpu-check

runs, in about 5 minutes on one H200, and prints one table (also written as JSON, --out):
  1. tests:      `pytest -m cuda tests/test_cuda.py` (bf16 step per regime against float32,
                 SyncBatchNorm, DDP under torchrun with NCCL, resume, predict and evaluate on CUDA)
  2. matmul:     a large bf16 matrix product, the practical ceiling
  3. throughput: images/s and achieved TFLOP/s (counted by torch's FlopCounterMode over one
                 forward + backward) of the 7-conv net at 128 px, full width, and of VGG-16 at
                 224 px, as shares of that ceiling and of the device's datasheet bf16 peak
  4. loader:     the training loop as dareg runs it (uint8 cache moved to the GPU once, batches
                 sampled there) against the same loop on a batch already on the GPU: the share
                 of the loop's time the GPU does not wait; and the loop fed from the host cache
  5. original:   the original codebases' profile end to end (profiles/original.yaml: their age
                 split sizes, 128 px, full width, its epochs and steps; synthetic images) through
                 dareg.train.fit and the evaluate functions, one seed per regime, each regime's
                 wall time (steps cut, and said so, if the budget would be exceeded)

Without a CUDA device it says so in one line and exits with status 3 (EXIT_NO_GPU).
`--cpu-smoke` runs every section on the CPU at toy sizes (the tests' check that this script and
tests/test_cuda.py work before a GPU is at hand); its figures mean nothing.
Exit status: 0 when every section ran and every test passed, 1 otherwise (targets are reported,
not enforced).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("TQDM_DISABLE", "1")  # one table, not thousands of progress-bar lines

from dareg import evaluate, params as params_mod, profile, train  # noqa: E402
from dareg.data import Split, Stream, to_device  # noqa: E402
from dareg.models import build_model  # noqa: E402

EXIT_NO_GPU = 3
# Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, TFLOP/s, matched by
# substring of torch.cuda.get_device_name() in this order (the first match wins).
BF16_DENSE_PEAK = [("H100 PCIe", 756), ("H100 NVL", 835), ("H200", 989), ("H100", 989),
                   ("GH200", 989), ("B200", 2250), ("A100", 312), ("L40S", 362), ("L40", 181),
                   ("L4", 121), ("A10", 125), ("RTX 4090", 165), ("RTX 3090", 71)]
def with_src() -> str:
    """PYTHONPATH for a subprocess: src/ first, whatever was there kept."""
    return os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))


TARGETS = {"singh7": 0.40, "vgg16": 0.50, "loader": 0.90}  # issue 13's targets

FULL = {"matmul": 8192, "matmul_reps": 10, "singh7": (128, 1.0, 256), "vgg16": (224, 128),
        "steps": 30, "loader_steps": 200}
SMOKE = {"matmul": 256, "matmul_reps": 2, "singh7": (64, 0.125, 4), "vgg16": (32, 2),
         "steps": 2, "loader_steps": 4}


def peak_for(name: str) -> float | None:
    return next((peak for key, peak in BF16_DENSE_PEAK if key in name), None)


class Clock:
    """Wall time of device work: synchronizes before reading the clock on CUDA."""

    def __init__(self, device: torch.device):
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def __call__(self) -> float:
        self.sync()
        return time.perf_counter()


def model_params(base: params_mod.Params, **changes) -> params_mod.Model:
    return replace(base.model, **changes)


# ---------------------------------------------------------------- sections


def section_tests(device: torch.device, smoke: bool) -> dict:
    """pytest -m cuda on tests/test_cuda.py, without the suite's conftest (which needs DVC)."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        env = {**os.environ, "PYTHONPATH": with_src()}
        if smoke:
            env["DAREG_CUDA_TESTS_ON"] = "cpu"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "--noconftest", "-p", "no:cacheprovider",
                               "-m", "cuda", "-q", "-rfEs", f"--junitxml={junit}",
                               "-o", "addopts=", str(ROOT / "tests" / "test_cuda.py")],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        cases = []
        if junit.exists():
            for case in ET.parse(junit).getroot().iter("testcase"):
                outcome = "passed"
                for child in case:
                    if child.tag in ("failure", "error"):
                        outcome = "failed"
                    elif child.tag == "skipped":
                        outcome = "skipped"
                cases.append({"test": case.get("name"), "outcome": outcome,
                              "seconds": float(case.get("time", 0))})
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "skipped")}
    ok = proc.returncode == 0 and counts["failed"] == 0 and counts["passed"] > 0
    return {"ok": ok, **counts, "seconds": round(seconds, 1), "cases": cases,
            "output_tail": (proc.stdout + proc.stderr)[-3000:] if not ok else ""}


def section_matmul(device: torch.device, sizes: dict) -> dict:
    n, reps = sizes["matmul"], sizes["matmul_reps"]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    clock = Clock(device)
    for _ in range(3):
        a @ b
    start = clock()
    for _ in range(reps):
        a @ b
    seconds = (clock() - start) / reps
    return {"ok": True, "n": n, "dtype": str(dtype).removeprefix("torch."),
            "tflops": 2 * n**3 / seconds / 1e12}


def fixed_batch(regime: params_mod.Regime, image_size: int, device: torch.device, seed: int = 0):
    """A batch as draw_batch makes it, already on `device` (uint8 images, labels per stream)."""
    rng = np.random.default_rng(seed)
    counts = {s: regime.batch[s] for s in params_mod.STREAMS if regime.batch.get(s)}
    images = torch.from_numpy(rng.integers(0, 256, (sum(counts.values()), image_size, image_size, 3),
                                           dtype=np.uint8)).to(device)
    labels = {s: torch.from_numpy(rng.random(c, dtype=np.float32)) for s, c in counts.items()
              if s in params_mod.LABELED_STREAMS}
    return images, counts, labels


def time_steps(model, regime, loss_cfg, cfg, batch, device, steps: int, count_flops: bool = True
               ) -> tuple[float, float, float]:
    """(seconds per optimizer step, FLOPs of one forward + backward, seconds of the warm-up) of
    dareg.train.step; FLOPs as torch's FlopCounterMode counts them (convolutions and matrix
    products, forward and backward), NaN when not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    optimizer = train.make_optimizer(model, cfg)
    clock = Clock(device)
    start = clock()
    for _ in range(3):  # warm-up: cuDNN's autotuner, the allocator, torch.compile
        train.step(model, optimizer, batch, regime, loss_cfg, device, 0.0, cfg.precision, check=False)
    warm = clock() - start
    flops = float("nan")
    if count_flops:
        with FlopCounterMode(display=False) as counter:
            train.step(model, optimizer, batch, regime, loss_cfg, device, 0.0, cfg.precision,
                       check=False)
        flops = float(counter.get_total_flops())
    start = clock()
    for _ in range(steps):
        train.step(model, optimizer, batch, regime, loss_cfg, device, 0.0, cfg.precision, check=False)
    return (clock() - start) / steps, flops, warm


def section_throughput(device, sizes, p, ceiling: float, peak: float | None) -> dict:
    rows = {}
    size, width, batch = sizes["singh7"]
    vsize, vbatch = sizes["vgg16"]
    nets = {"singh7": (model_params(p, backbone="singh7", width=width, norm="none", dropout=0.0),
                       size, batch),
            "vgg16": (model_params(p, backbone="vgg16", dropout=0.0), vsize, vbatch)}
    for name, (mp, image_size, batch_size) in nets.items():
        regime = params_mod.Regime(batch={"target_labeled": batch_size}, weights={"supervised": 1.0})
        model = build_model(mp, image_size, seed=0, pretrained=False)
        train.place(model, device)
        batch = fixed_batch(regime, image_size, device)
        seconds, flops, _ = time_steps(model, regime, p.losses, p.train, batch, device, sizes["steps"])
        tflops = flops / seconds / 1e12
        rows[name] = {"image_size": image_size, "batch": batch_size,
                      "images_per_s": batch_size / seconds, "tflops": tflops,
                      "gflop_per_image": flops / batch_size / 1e9,
                      "share_of_matmul": tflops / ceiling, "share_of_peak": tflops / peak if peak else None,
                      "target": TARGETS[name], "met": tflops / ceiling >= TARGETS[name]}
        if name == "singh7":  # train.compile: the same steps through torch.compile
            rows["singh7_compiled"] = compiled_row(mp, image_size, batch_size, regime, p, batch,
                                                   device, sizes, seconds)
        del model
    return {"ok": True, **rows}


def compiled_row(mp, image_size, batch_size, regime, p, batch, device, sizes, eager_s) -> dict:
    """train.compile's effect: the singh7 steps through torch.compile (CUDA only: on the CPU
    inductor's C++ build takes minutes)."""
    if device.type != "cuda":
        return {"measured": False, "why": "CPU smoke run: torch.compile is measured on CUDA only"}
    try:
        model = train.place(build_model(mp, image_size, seed=0, pretrained=False), device)
        seconds, _, warm = time_steps(torch.compile(model), regime, p.losses, p.train, batch,
                                      device, sizes["steps"], count_flops=False)
    except Exception as err:  # a missing compiler or Triton: report it, the check goes on
        return {"measured": False, "why": f"{type(err).__name__}: {err}".splitlines()[0][:200]}
    return {"measured": True, "batch": batch_size, "images_per_s": batch_size / seconds,
            "speedup": eager_s / seconds, "compile_s": warm}


def synthetic_splits(sizes: dict[str, int], image_size: int, seed: int = 0) -> dict[str, Split]:
    """Learnable synthetic faces: the label is the mean brightness of a central patch (plus
    noise); the target domain is brighter and bluer (a shift the adaptation terms can see)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in sizes.items():
        target = name != "source"
        y = rng.random(n, dtype=np.float32)
        base = rng.integers(0, 96, (n, image_size, image_size, 3), dtype=np.uint8)
        c = image_size // 4
        base[:, c:-c, c:-c, :] += (y * 120).astype(np.uint8)[:, None, None, None]
        if target:
            base[..., 2] += 30
        labels = None if name == "target_unlabeled" else np.clip(
            y + rng.normal(0, 0.02, n).astype(np.float32), 0, 1)
        out[name] = Split(base, labels)
    return out


def section_loader(device, sizes, p) -> dict:
    """Seconds per step of the training loop as fit runs it, against the same loop on a batch
    already on the device (no sampling, no copy), and fed from the host-side cache."""
    size, width, _ = sizes["singh7"]
    mp = model_params(p, backbone="singh7", width=width, norm="none", dropout=0.0)
    regime = p.regimes["da"]
    n = {"source": 3480, "target_train": 696, "target_unlabeled": 2610}
    if device.type != "cuda":
        n = {k: 40 for k in n}
    host = synthetic_splits(n, size)
    steps = sizes["loader_steps"]
    out = {}
    for label, splits in (("dareg (cache on the device)", to_device(host, device)),
                          ("host cache (memory map)", host)):
        model = build_model(mp, size, seed=0, pretrained=False)
        train.prepare(model, splits, regime, p.train, p.losses)
        train.place(model, device)
        optimizer = train.make_optimizer(model, p.train)
        rng = np.random.default_rng(0)
        streams = {s: Stream(splits[train.STREAM_SPLITS[s]], rng) for s in regime.batch}
        train.train_one_epoch(model, optimizer, streams, regime, p.losses, device, 3, "warm-up",
                              precision=p.train.precision)
        clock = Clock(device)
        start = clock()
        train.train_one_epoch(model, optimizer, streams, regime, p.losses, device, steps, label,
                              precision=p.train.precision)
        out[label] = (clock() - start) / steps
        if label.startswith("dareg"):
            batch = train.draw_batch(regime, streams)
            start = clock()
            for _ in range(steps):
                train.step(model, optimizer, batch, regime, p.losses, device, 0.0, p.train.precision)
            out["batch already on the device"] = (clock() - start) / steps
    busy = out["batch already on the device"] / out["dareg (cache on the device)"]
    return {"ok": True, "seconds_per_step": out, "busy_share": busy,
            "host_cache_busy_share": out["batch already on the device"] / out["host cache (memory map)"],
            "regime": "da", "image_size": size, "width": width,
            "target": TARGETS["loader"], "met": busy >= TARGETS["loader"]}


def original_params(smoke: bool) -> params_mod.Params:
    import yaml

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    profile.merge(base, yaml.safe_load((ROOT / "profiles" / "original.yaml").read_text()))
    p = params_mod.parse(base, "params.yaml + profiles/original.yaml")
    if smoke:
        p = replace(p, model=replace(p.model, width=0.125),
                    train=replace(p.train, epochs=1, steps_per_epoch=2))
    return p


def section_original(device, p: params_mod.Params, smoke: bool, budget_s: float) -> dict:
    """Every regime of the original codebases' profile's run.regimes, one seed, on synthetic images at the
    profile's age split sizes (target_labeled split 80/20 into train/val), through fit + evaluate."""
    age = p.split.age
    val = round(age.target_labeled * p.split.val_fraction)
    sizes = {"source": age.source, "target_train": age.target_labeled - val, "target_val": val,
             "target_unlabeled": age.target_unlabeled, "target_test": age.target_test}
    if smoke:
        sizes = {k: 24 for k in sizes}
    image_size = 64 if smoke else p.cache.image_size
    splits = synthetic_splits(sizes, image_size)  # on the host, as a stage loads them: fit moves them
    host_val, host_test, host_source = (splits[k] for k in ("target_val", "target_test", "source"))
    cfg = replace(p.train, device=device.type, repeats=1)
    regimes = p.run.regimes
    # A probe of the first regime's step time sizes the run to the budget.
    steps = cfg.steps_per_epoch
    probe_model = build_model(p.model, image_size, seed=0, pretrained=False)
    probe = time_steps(train.place(probe_model, device), p.regimes["da"],
                       p.regime_losses("da"), cfg,
                       fixed_batch(p.regimes["da"], image_size, device), device, 20 if not smoke else 1,
                       count_flops=False)[0]
    projected = probe * cfg.epochs * steps * len(regimes) * 1.3  # + validation, evaluation
    note = ""
    if projected > budget_s:
        steps = max(1, int(steps * budget_s / projected))
        note = (f"steps_per_epoch cut from {cfg.steps_per_epoch} to {steps} to fit the "
                f"{budget_s:.0f} s budget (probe: {probe * 1e3:.1f} ms a step)")
    cfg = replace(cfg, steps_per_epoch=steps)
    rows = {}
    for name in regimes:
        start = time.perf_counter()
        model = build_model(p.model, image_size, seed=0, pretrained=False)

        def validate(net):
            return float(np.mean(np.abs(train.predict(net, host_val.images, device) - host_val.labels)))

        best = train.fit(model, splits, p.regimes[name], cfg, p.regime_losses(name), validate,
                         lambda e, v: None, desc=name)
        model.load_state_dict(best["state"])
        pred, test_feat = train.infer(model, host_test.images, device)
        metrics = evaluate.factor_metrics(host_test.labels, pred, [""])
        mmd = evaluate.alignment_mmd(train.infer(model, host_source.images, device)[1], test_feat,
                                     p.evaluate.mmd_samples, p.evaluate.seed)
        rows[name] = {"seconds": time.perf_counter() - start, "best_epoch": best["epoch"],
                      "val_mae": best["val_mae"], "test_mae": metrics["mae"],
                      "collapse_ratio": metrics["collapse_ratio"], "feature_mmd": mmd["mmd"],
                      "finite": bool(np.isfinite(pred).all())}
    return {"ok": all(r["finite"] for r in rows.values()), "sizes": sizes, "image_size": image_size,
            "epochs": cfg.epochs, "steps_per_epoch": steps, "note": note, "regimes": rows}


# ---------------------------------------------------------------- report


def table(report: dict) -> str:
    lines = [f"gpu-check {report['date']}: {report['device']} (torch {report['torch']}, CUDA "
             f"{report['cuda']}, cuDNN {report['cudnn']}, Python {report['python']})"]
    if report.get("smoke"):
        lines.append("CPU SMOKE RUN: toy sizes, the figures mean nothing")
    lines += ["", "| check | result | target |", "|---|---|---|"]
    s = report["sections"]

    def row(what, result, target=""):
        lines.append(f"| {what} | {result} | {target} |")

    for name, sec in s.items():
        if "error" in sec:
            row(name, f"ERROR: {sec['error']}")
    if "tests" in s and "error" not in s["tests"]:
        t = s["tests"]
        row("pytest -m cuda", f"{t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped "
            f"({t['seconds']:.0f} s)", "all pass")
        for case in t["cases"]:
            if case["outcome"] == "failed":
                row(f"  failed: {case['test']}", "")
    if "matmul" in s and "error" not in s["matmul"]:
        m = s["matmul"]
        row(f"{m['dtype']} matmul {m['n']}^3 (the ceiling)", f"{m['tflops']:.3g} TFLOP/s"
            + (f" = {m['tflops'] / report['peak_tflops']:.0%} of the datasheet's "
               f"{report['peak_tflops']}" if report["peak_tflops"] else ""))
    if "throughput" in s and "error" not in s["throughput"]:
        for name, r in s["throughput"].items():
            if name == "singh7_compiled":
                row("  the same, train.compile: true", (
                    f"{r['images_per_s']:,.0f} img/s, x{r['speedup']:.2f} of eager after "
                    f"{r['compile_s']:.0f} s of compiling") if r["measured"] else r["why"])
                continue
            if not isinstance(r, dict):
                continue
            peak = f", {r['share_of_peak']:.0%} of peak" if r["share_of_peak"] else ""
            row(f"train {name} {r['image_size']} px, batch {r['batch']} (fwd + bwd + Adam)",
                f"{r['images_per_s']:,.0f} img/s, {r['tflops']:.3g} TFLOP/s "
                f"({r['gflop_per_image']:.1f} GFLOP/img) = {r['share_of_matmul']:.0%} of matmul{peak}",
                f">= {r['target']:.0%} of matmul: {'met' if r['met'] else 'NOT met'}")
    if "loader" in s and "error" not in s["loader"]:
        ld = s["loader"]
        per = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in ld["seconds_per_step"].items())
        row(f"loader, regime {ld['regime']} ({per})",
            f"GPU busy {ld['busy_share']:.0%} of the loop (host cache: {ld['host_cache_busy_share']:.0%})",
            f">= {ld['target']:.0%}: {'met' if ld['met'] else 'NOT met'}")
    if "original" in s and "error" not in s["original"]:
        sd = s["original"]
        head = (f"original codebases' profile, {sd['epochs']} x {sd['steps_per_epoch']} steps, "
                f"{sd['image_size']} px, splits {sd['sizes']}")
        row(head, sd["note"] or "as the profile says")
        for name, r in sd["regimes"].items():
            row(f"  {name}", f"{r['seconds']:.1f} s; best epoch {r['best_epoch']}, val MAE "
                f"{r['val_mae']:.3f}, test MAE {r['test_mae']:.3f} (synthetic labels in [0, 1]), "
                f"collapse {r['collapse_ratio']:.2f}", "finite" if r["finite"] else "NOT finite")
    lines.append(f"\ntotal {report['seconds']:.0f} s; {'OK' if report['ok'] else 'FAILED'}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gpu_check.json")
    parser.add_argument("--sections", nargs="+", default=["tests", "matmul", "throughput", "loader", "original"])
    parser.add_argument("--original-budget", type=float, default=150.0,
                        help="seconds the original-profile section may take (steps are cut to fit)")
    parser.add_argument("--cpu-smoke", action="store_true", help="every section on the CPU at toy sizes")
    args = parser.parse_args()
    if not args.cpu_smoke and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device here (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda or 'none'}): nothing to check; run it on a machine with an "
              f"NVIDIA GPU (README, 'GPU')")
        return EXIT_NO_GPU
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    sizes = SMOKE if args.cpu_smoke else FULL
    name = train.describe_device(device)
    report = {"date": datetime.date.today().isoformat(), "device": name, "smoke": args.cpu_smoke,
              "torch": torch.__version__, "cuda": torch.version.cuda,
              "cudnn": torch.backends.cudnn.version(), "python": platform.python_version(),
              "peak_tflops": peak_for(name), "sections": {}}
    start = time.perf_counter()
    p = params_mod.parse(__import__("yaml").safe_load((ROOT / "params.yaml").read_text()))
    ceiling = None
    for section in args.sections:
        t0 = time.perf_counter()
        try:
            if section == "tests":
                result = section_tests(device, args.cpu_smoke)
            elif section == "matmul":
                result = section_matmul(device, sizes)
                ceiling = result["tflops"]
            elif section == "throughput":
                ceiling = ceiling or section_matmul(device, sizes)["tflops"]
                result = section_throughput(device, sizes, p, ceiling, report["peak_tflops"])
            elif section == "loader":
                result = section_loader(device, sizes, p)
            elif section == "original":
                result = section_original(device, original_params(args.cpu_smoke), args.cpu_smoke,
                                       args.original_budget)
            else:
                raise ValueError(f"unknown section {section!r}")
        except Exception as err:  # report it and go on: one failure must not hide the rest
            result = {"ok": False, "error": f"{type(err).__name__}: {err}".splitlines()[0][:300],
                      "traceback": traceback.format_exc()}
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        report["sections"][section] = result
        print(f"gpu-check: {section} done in {result['wall_s']:.0f} s", file=sys.stderr, flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report["seconds"] = time.perf_counter() - start
    report["ok"] = all(sec.get("ok") for sec in report["sections"].values())
    report["table"] = table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    tmp.replace(args.out)
    print(report["table"])
    for sec in report["sections"].values():
        if sec.get("traceback"):
            print(sec["traceback"], file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
