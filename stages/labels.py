"""Stage labels@{task}: normalize labels of both domains into data/labels/{task}/."""
import argparse
from pathlib import Path

import pandas as pd

from dareg import cli, labels, params
from dareg.io import write_csv, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", choices=params.TASKS, required=True)
    parser.add_argument("--source", type=Path, required=True,
                        help="female.csv, posts.csv or dsprites' source.csv")
    parser.add_argument("--target", type=Path, required=True,
                        help="male.csv, photos.csv or dsprites' target.csv")
    parser.add_argument("--source-images", type=Path, required=True, help="folder image paths are in")
    parser.add_argument("--target-images", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    p = params.load().labels
    source, target = pd.read_csv(args.source), pd.read_csv(args.target)
    if args.task == "age":
        table = labels.age_labels(source, target, args.source_images, p.age)
    elif args.task == "dsprites":
        table = labels.dsprites_labels(source, target, args.source_images, p.dsprites)
    else:
        table = labels.popularity_labels(source, target, args.source_images, args.target_images,
                                         p.popularity)
    write_csv(args.out / "labels.csv", table)
    write_json(args.out / "units.json", labels.units(args.task, p))
    counts = table["domain"].value_counts().to_dict()
    print(f"labels@{args.task}: {counts.get('source', 0)} source, {counts.get('target', 0)} target")


if __name__ == "__main__":
    cli.run(main)
