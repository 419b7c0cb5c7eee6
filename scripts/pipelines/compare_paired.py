"""Two versions of a model on the same images: each figure of the ship rule's sets, the difference
and its paired bootstrap 95% interval, from the models' stored predictions.

The ship rule (check_ship_rule.py) compares point estimates; this says whether a difference is
larger than the sets' sampling error (an interval that excludes 0). It reads two model folders
(`weights/<id>`, `candidates/<id>`, or a copy of an older release's folder) and chooses nothing.

Usage:
  python scripts/pipelines/compare_paired.py weights/efficientnet_lite0.ham10000 \
      candidates/efficientnet_lite0.ham10000 [--sets ph2 isic2017] [--resamples 2000]
Exit status 2 on a bad argument.
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from lesionlib.paired_comparison import paired_differences  # noqa: E402

SETS = ("ham10000_val", "bcn20000_val", "ham10000_test", "isic2017", "ph2", "bcn20000_test")
MELANOMA_ONLY = ("isic2017", "ph2")  # two of the seven classes: balanced accuracy says little
METRICS = (("balanced_accuracy", "balanced accuracy"), ("melanoma_auc", "melanoma AUC"))


def read_model(folder: Path) -> tuple[dict, float]:
    card = json.loads((folder / "card.json").read_text())
    return card, float(card["melanoma_threshold"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="model folder of the version before")
    parser.add_argument("after", type=Path, help="model folder of the version after")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--resamples", type=int, default=2000)
    arguments = parser.parse_args()
    try:
        (card_before, threshold_before), (card_after, threshold_after) = (
            read_model(arguments.before), read_model(arguments.after))
    except (OSError, ValueError, KeyError) as error:
        print(f"error: expected two model folders with a card.json ({error}).", file=sys.stderr)
        return 2
    print(f"{card_before['id']} {card_before['version']} ({arguments.before}) -> "
          f"{card_after['id']} {card_after['version']} ({arguments.after}); paired bootstrap, "
          f"{arguments.resamples} resamples, seed 0\n")
    print("| set | figure | before | after | difference [95% interval] |")
    print("|---|---|---|---|---|")
    for set_name in arguments.sets:
        files = [folder / "predictions" / f"{set_name}.csv"
                 for folder in (arguments.before, arguments.after)]
        if not all(path.is_file() for path in files):
            print(f"| {set_name} | not stored for both models | — | — | — |")
            continue
        try:
            figures = paired_differences(pd.read_csv(files[0]), pd.read_csv(files[1]),
                                         threshold_before, threshold_after,
                                         resamples=arguments.resamples)
        except ValueError as error:
            print(f"error: {set_name}: {error}", file=sys.stderr)
            return 2
        for metric, label in METRICS:
            if metric == "balanced_accuracy" and set_name in MELANOMA_ONLY:
                continue
            was, now, difference, low, high = figures[metric]
            if difference is None:
                print(f"| {set_name} | {label} | undefined | — | — |")
                continue
            print(f"| {set_name} | {label} | {was:.4f} | {now:.4f} | "
                  f"{difference:+.4f} [{low:+.4f}, {high:+.4f}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
