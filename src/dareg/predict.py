"""Predict with a trained checkpoint: image files or folders in, a CSV of predictions in label units
(years for age, log popularity for popularity) out.

    python -m dareg.predict models/age/da/seed-0.pt photos/ more.jpg --out predictions.csv

Images get the pipeline's own preprocessing (center square crop, resize to the checkpoint's input
size); the checkpoint carries its label scaling, so no params file or data is needed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dareg import checkpoint, cli
from dareg.cache import load_square
from dareg.data import factors, unscale
from dareg.errors import DataError
from dareg.io import write_csv
from dareg.progress import bar
from dareg.train import pick_device, predict

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def image_paths(inputs: list[Path]) -> list[Path]:
    """The files given, and the image files (by suffix, sorted) inside each folder given, recursively."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            paths.append(item)
        else:
            raise DataError(f"{item}: no such file or folder; pass image files or folders of images")
    if not paths:
        raise DataError(f"no images (files ending in {', '.join(sorted(IMAGE_SUFFIXES))}) in "
                        f"{', '.join(map(str, inputs))}")
    return paths


def read_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 (size, size, 3), preprocessed as the image cache does."""
    try:
        return load_square(str(path), size)
    except DataError as err:
        raise DataError(f"{path}: unreadable image, no predictions written; remove or replace it "
                        f"and run again (decoder: {err})") from None


def predict_files(ckpt: dict, paths: list[Path], batch_size: int = 64, device: str = "auto",
                  progress: bool = True) -> pd.DataFrame:
    """Predictions in label units for `paths`: columns image, predicted (predicted_<factor> for
    each factor of a task with several), unit."""
    model, scaling = checkpoint.restore_model(ckpt), ckpt["scaling"]
    dev, outputs = pick_device(device), []
    precision = ckpt.get("train", {}).get("precision", "bf16")  # as it was trained (CUDA only)
    with bar(total=len(paths), desc="predict", unit="img", disable=not progress) as shown:
        for i in range(0, len(paths), batch_size):
            batch = np.stack([read_image(p, ckpt["image_size"]) for p in paths[i:i + batch_size]])
            outputs.append(predict(model, batch, dev, precision=precision))
            shown.update(len(batch))
    labels = (unscale(np.concatenate(outputs), scaling["target"]) * scaling["per_label"]).round(4)
    names = factors(scaling)
    columns = ({"predicted": labels[:, 0]} if len(names) == 1 else
               {f"predicted_{name}": labels[:, k] for k, name in enumerate(names)})
    return pd.DataFrame({"image": [str(p) for p in paths], **columns, "unit": scaling["unit"]})


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m dareg.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a models/{task}/{regime}/seed-{seed}.pt file")
    parser.add_argument("images", type=Path, nargs="+", help="image files and/or folders")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = parser.parse_args(argv)
    if args.checkpoint.is_dir():
        raise DataError(f"{args.checkpoint}: a folder; pass one checkpoint, such as "
                        f"{checkpoint.seed_files(args.checkpoint)[0]}")
    ckpt = checkpoint.load(args.checkpoint)
    table = predict_files(ckpt, image_paths(args.images), args.batch_size, args.device)
    write_csv(args.out, table)
    print(f"{len(table)} predictions ({ckpt['task']}, {ckpt['regime']}, {table['unit'][0]}) "
          f"written to {args.out}")


if __name__ == "__main__":
    cli.run(lambda: main(sys.argv[1:]))
