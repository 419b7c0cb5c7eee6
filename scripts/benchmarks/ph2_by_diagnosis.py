"""PH2 melanoma AUC against each kind of naevus: common naevi (80) and atypical naevi (80), from
the stored PH2 predictions of each model folder named, with PH2's clinical diagnosis joined by
image id from ../shared/data/ph2/labels.csv.

A fall of the PH2 figure can mean a model now ranks atypical naevi (which dermatologists excise
too) above melanomas, or that it ranks worse overall; this separates the two.

Usage:
  python scripts/benchmarks/ph2_by_diagnosis.py weights/efficientnet_lite0.ham10000 \
      candidates/efficientnet_lite0.ham10000 [--data ../shared/data/ph2]
Exit status 2 when a folder or the PH2 labels cannot be read.
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from lesionlib.cards import CardError  # noqa: E402
from lesionlib.data import resolve_data_dir  # noqa: E402
from lesionlib.evaluation import load_predictions  # noqa: E402
from lesionlib.integrity import IntegrityError  # noqa: E402
from lesionlib.metrics import melanoma_report  # noqa: E402
from lesionlib.registry import read_verified_card  # noqa: E402

NAEVI = ("common_nevus", "atypical_nevus")


def by_diagnosis(predictions: pd.DataFrame, labels: pd.DataFrame, threshold: float) -> dict:
    """Median melanoma probability per clinical diagnosis and the AUC against each naevus kind."""
    frame = predictions.merge(labels[["image_id", "clinical_diagnosis"]], on="image_id",
                              validate="one_to_one")
    row = {f"median {name}": float(group["mel"].median())
           for name, group in frame.groupby("clinical_diagnosis")}
    for naevus in NAEVI:
        pair = frame[(frame["melanoma"] == 1) | (frame["clinical_diagnosis"] == naevus)]
        row[f"AUC vs {naevus}"] = melanoma_report(pair["melanoma"].to_numpy(),
                                                  pair["mel"].to_numpy(), threshold)["melanoma_auc"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="model folders")
    parser.add_argument("--data", help="PH2 folder (default: ../shared/data/ph2)")
    arguments = parser.parse_args()
    try:
        folder = resolve_data_dir(arguments.data, "ph2")
        if folder is None:
            raise FileNotFoundError("no PH2 labels.csv beside HAM10000")
        labels = pd.read_csv(folder / "labels.csv")
        rows = {}
        for model in arguments.folders:
            card = read_verified_card(model)
            stored = load_predictions(card, "ph2")
            if stored is None:
                raise FileNotFoundError(f"{model}: no stored PH2 predictions")
            rows[model] = by_diagnosis(stored, labels, card.melanoma_threshold)
    except (OSError, ValueError, KeyError, CardError, IntegrityError) as error:
        print(f"error: expected model folders with predictions/ph2.csv and PH2's labels.csv "
              f"({error}).", file=sys.stderr)
        return 2
    columns = list(next(iter(rows.values())))
    print("| model folder | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for model, row in rows.items():
        print(f"| `{model}` | " + " | ".join(f"{row[column]:.3f}" for column in columns) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
