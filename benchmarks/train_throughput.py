"""Training throughput: the real loader (memory-mapped image cache) against the same loop over
tensors already in memory, and the 7-conv net's samples/s at 128x128 as a share of CPU peak.

python benchmarks/train_throughput.py   (prints its figures; writes only to a temporary folder)
"""
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dareg import params, train
from dareg.data import Split, Stream, to_input
from dareg.models import build_model

ROOT = Path(__file__).resolve().parents[1]
PEAK_GFLOPS = 180.0      # this CPU's matrix-product peak (README "Benchmarks")
FORWARD_GFLOP = 2.6      # the 7-conv net at 128x128, full width, per image; training ~ 3x forward


def steps_per_second(step, steps: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def best_of(rounds: int, steps: int, *loops) -> list[float]:
    """Each loop's best steps/s over `rounds` interleaved rounds (the machine is shared)."""
    rates = [[steps_per_second(loop, steps) for loop in loops] for _ in range(rounds)]
    return [max(column) for column in zip(*rates)]


def loader_vs_memory(p, size: int, steps: int, rounds: int) -> tuple[float, float]:
    """Images/s of a no_da step (16 images) fed by Streams over a .npy memory map, and fed by
    input tensors prepared in memory beforehand (no decoding, copying or normalizing)."""
    regime = p.regimes["no_da"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2000, size, size, 3), dtype=np.uint8)
    labels = rng.random(2000, dtype=np.float32)
    model = build_model(p.model, size, seed=0)
    optimizer = train.make_optimizer(model, p.train)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "cache.npy", images)
        mapped = Split(np.load(Path(tmp) / "cache.npy", mmap_mode="r"), labels)
        streams = {"source": Stream(mapped, rng), "target_labeled": Stream(mapped, rng)}
        x, y = to_input(images[:16], "cpu"), torch.from_numpy(labels[:16])

        def with_loader():
            train.train_one_epoch(model, optimizer, streams, regime, p.losses,
                                  torch.device("cpu"), 1, "loader")

        def in_memory():
            loss = ((model(x)[0] - y) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        loader, memory = best_of(rounds, steps, with_loader, in_memory)
    return loader * 16, memory * 16


def matmul_gflops(n: int = 4096, repeats: int = 10) -> float:
    """This CPU's float32 matrix-product rate through torch (2 n^3 FLOP a product), best of 3."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    rate = steps_per_second(lambda: a @ b, repeats)
    return max(rate, steps_per_second(lambda: a @ b, repeats), steps_per_second(lambda: a @ b, repeats)) * 2 * n**3 / 1e9


def main() -> None:
    p = params.load(ROOT / "params.yaml")
    p = replace(p, train=replace(p.train, device="cpu"))
    loader, memory = loader_vs_memory(p, p.cache.image_size, steps=20, rounds=3)
    print(f"demo net ({p.cache.image_size}x{p.cache.image_size}, width {p.model.width}, batch 16): "
          f"loader {loader:.0f} images/s, in memory {memory:.0f} images/s, ratio {loader / memory:.1%}")
    seed_net = replace(p, model=replace(p.model, width=1.0, norm="none"))
    _, full = loader_vs_memory(seed_net, 128, steps=3, rounds=2)
    gflops = full * FORWARD_GFLOP * 3
    peak = matmul_gflops()
    print(f"7-conv net at 128x128, full width, batch 16: {full:.1f} images/s = {gflops:.0f} GFLOP/s "
          f"= {gflops / PEAK_GFLOPS:.0%} of the quoted {PEAK_GFLOPS:.0f} GFLOP/s, "
          f"{gflops / peak:.0%} of the {peak:.0f} GFLOP/s torch's float32 matmul reaches here")


if __name__ == "__main__":
    main()
