"""Print a model's subgroup table with 95% bootstrap intervals, as the audit page shows it.

Usage: python scripts/benchmarks/subgroup_report.py --model ensemble.ham10000 --set ham10000_test
           [--by age_band] [--weights weights] [--data ../shared/data/ham10000]
From the model's stored predictions (``predictions/<set>.csv``); for ISIC 2017, age and sex are
joined from ``<data>/../isic2017/labels.csv`` when present. Seeded: the same table every run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd  # noqa: E402

from lesionlib import data, evaluation, registry, subgroups  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--set", dest="set_name", default="ham10000_test",
                        choices=list(evaluation.EVALUATION_SETS))
    parser.add_argument("--by", default="age_band", choices=list(subgroups.METADATA_COLUMNS))
    parser.add_argument("--weights", default=str(Path(__file__).resolve().parents[2]
                                                  / "weights"))
    parser.add_argument("--data", default=None, help="HAM10000 folder (siblings: other sets)")
    arguments = parser.parse_args(argv)
    card = registry.discover(arguments.weights).cards.get(arguments.model)
    if card is None:
        parser.error(f"no model {arguments.model!r} in {arguments.weights}")
    frame = evaluation.load_predictions(card, arguments.set_name)
    if frame is None:
        parser.error(f"{arguments.model} has no stored predictions on {arguments.set_name}")
    dataset = evaluation.EVALUATION_SETS[arguments.set_name][0]
    folder = (data.resolve_data_dir(arguments.data, name="ham10000").parent / dataset
              if arguments.data else data.resolve_data_dir(name=dataset))
    labels = pd.read_csv(folder / "labels.csv") if folder and (folder / "labels.csv").is_file() \
        else None
    frame = subgroups.with_metadata(frame[frame["label"] >= 0], labels)
    table = subgroups.subgroup_table(frame, arguments.by, card.melanoma_threshold)
    print(f"{card.id} v{card.version} on {arguments.set_name}, by {arguments.by}; melanoma "
          f"threshold {card.melanoma_threshold:.3f}; 95% bootstrap intervals "
          f"({subgroups.DEFAULT_RESAMPLES} resamples, seed {subgroups.DEFAULT_SEED})")
    print(subgroups.readable_table(table).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
