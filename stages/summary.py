"""Stage summary: metrics/summary.json and a Markdown table comparing regimes per task."""
import argparse
from pathlib import Path

from dareg import cli, summary
from dareg.io import read_json, write_json, write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("metrics", type=Path, nargs="+", help="metrics/{task}/{regime}.json files")
    parser.add_argument("--out", type=Path, required=True, help="summary JSON")
    parser.add_argument("--report", type=Path, required=True, help="Markdown table")
    args = parser.parse_args()
    table = summary.collect([read_json(p) for p in args.metrics])
    write_json(args.out, table)
    report = summary.markdown(table)
    write_text(args.report, report)
    print(report)


if __name__ == "__main__":
    cli.run(main)
