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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from lesionlib.cards import CardError  # noqa: E402
from lesionlib.data import EXTERNAL_SETS  # noqa: E402
from lesionlib.evaluation import load_predictions  # noqa: E402
from lesionlib.integrity import IntegrityError  # noqa: E402
from lesionlib.paired_comparison import paired_differences  # noqa: E402
from lesionlib.registry import read_verified_card  # noqa: E402

SETS = ("ham10000_val", "bcn20000_val", "ham10000_test", "isic2017", "ph2", "bcn20000_test")
METRICS = (("balanced_accuracy", "balanced accuracy"), ("melanoma_auc", "melanoma AUC"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="model folder of the version before")
    parser.add_argument("after", type=Path, help="model folder of the version after")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--resamples", type=int, default=2000)
    arguments = parser.parse_args()
    try:
        before, after = read_verified_card(arguments.before), read_verified_card(arguments.after)
    except CardError as error:
        print(f"error: expected two sealed model folders ({error}).", file=sys.stderr)
        return 2
    print(f"{before.id} {before.version} ({arguments.before}) -> {after.id} {after.version} "
          f"({arguments.after}); paired bootstrap, {arguments.resamples} resamples, seed 0\n")
    print("| set | figure | before | after | difference [95% interval] |")
    print("|---|---|---|---|---|")
    for set_name in arguments.sets:
        try:
            stored = [load_predictions(card, set_name) for card in (before, after)]
            if any(frame is None for frame in stored):
                print(f"| {set_name} | not stored for both models | — | — | — |")
                continue
            figures = paired_differences(*stored, before.melanoma_threshold,
                                         after.melanoma_threshold, resamples=arguments.resamples)
        except (IntegrityError, ValueError) as error:
            print(f"error: {set_name}: {error}", file=sys.stderr)
            return 2
        for metric, label in METRICS:
            if metric == "balanced_accuracy" and set_name in EXTERNAL_SETS:
                continue  # two of the seven classes: balanced accuracy says little
            was, now, difference, low, high = figures[metric]
            if difference is None:
                print(f"| {set_name} | {label} | undefined | — | — |")
                continue
            print(f"| {set_name} | {label} | {was:.4f} | {now:.4f} | "
                  f"{difference:+.4f} [{low:+.4f}, {high:+.4f}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
