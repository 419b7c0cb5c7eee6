"""Choose the ensemble's members on the HAM10000 *validation* split, and say whether the
ensemble beats its best member.

Every combination of the installed single models (each alone included) is scored on its stored
validation predictions (never test) by the mean of its balanced accuracy (the 7-class answer)
and its melanoma AUC (the melanoma decision), weighed equally. The chosen ensemble is the
highest-scoring combination of two or more models.

Usage:
  python scripts/pipelines/choose_ensemble.py             # the table, the choice and the comparison
  python scripts/pipelines/choose_ensemble.py --members   # the chosen members' ids only (for scripts)
  python scripts/pipelines/choose_ensemble.py --name      # its display name, e.g. Ensemble (Lite0 v2 + Lite2 v1)
  python scripts/pipelines/choose_ensemble.py --split bcn20000_val   # the same table on another
                                                # stored validation split, for information only
"""

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lesionlib import evaluation, metrics, registry  # noqa: E402
from lesionlib.classes import MELANOMA_INDEX  # noqa: E402

RULE = "mean of validation balanced accuracy and validation melanoma AUC"
CHOICE_SPLIT = "ham10000_val"  # the split the ensemble is chosen on
INFORMATION_SPLITS = (CHOICE_SPLIT, "bcn20000_val")


def score_combinations(predictions: dict) -> list[dict]:
    """Every combination of ``predictions`` (model id -> validation predictions frame), each
    scored on the mean of its members' probabilities; best first."""
    rows = []
    for size in range(1, len(predictions) + 1):
        for combination in itertools.combinations(sorted(predictions), size):
            frames = [predictions[model_id] for model_id in combination]
            mean = np.mean([evaluation.probabilities_of(frame) for frame in frames], axis=0)
            labels = frames[0]["label"].to_numpy()
            balanced_accuracy = metrics.balanced_accuracy(labels, mean.argmax(axis=1))
            auc = metrics.melanoma_report(labels == MELANOMA_INDEX, mean[:, MELANOMA_INDEX],
                                          0.5)["melanoma_auc"]
            rows.append({"members": combination, "balanced_accuracy": balanced_accuracy,
                         "melanoma_auc": auc, "score": (balanced_accuracy + auc) / 2})
    return sorted(rows, key=lambda row: (-row["score"], row["members"]))


def choose(rows: list[dict]) -> tuple[dict, dict]:
    """The best ensemble (two or more members) and the best single model among ``rows``.

    Raises:
        ValueError: fewer than two single models have validation predictions.
    """
    ensembles = [row for row in rows if len(row["members"]) > 1]
    if not ensembles:
        raise ValueError(f"An ensemble needs two or more single models with stored validation "
                         f"predictions; received {len(rows)} candidate(s). Run "
                         "`python -m lesionlib evaluate --model <id>` for each model first.")
    return ensembles[0], next(row for row in rows if len(row["members"]) == 1)


def ensemble_name(members: tuple[str, ...], cards: dict) -> str:
    """``Ensemble (Lite0 v2 + Lite2 v1)``: each member's card name without its description in
    brackets or the family prefix, with its major version."""
    def short(card) -> str:
        return f"{card.name.split(' (')[0].removeprefix('EfficientNet-')} " \
               f"v{card.version.split('.')[0]}"
    return f"Ensemble ({' + '.join(short(cards[member]) for member in members)})"


def validation_predictions(split: str = CHOICE_SPLIT) -> dict:
    """Model id -> its stored predictions on ``split``, for every single model that has them."""
    cards = registry.discover().cards
    stored = {card_id: evaluation.load_predictions(card, split)
              for card_id, card in cards.items() if card.kind == "single"}
    return {card_id: frame for card_id, frame in stored.items() if frame is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", action="store_true",
                        help="print only the chosen members' ids, space-separated")
    parser.add_argument("--name", action="store_true",
                        help="print only the chosen ensemble's display name")
    parser.add_argument("--split", choices=INFORMATION_SPLITS, default=CHOICE_SPLIT,
                        help="score on this stored validation split (the table only: the choice "
                             "that --members and --name print is always made on HAM10000 "
                             "validation)")
    args = parser.parse_args(argv)
    for_information = args.split != CHOICE_SPLIT
    if for_information and (args.members or args.name):
        parser.error(f"--split {args.split} prints the table only; --members and --name give "
                     "the choice made on ham10000_val")
    rows = score_combinations(validation_predictions(args.split))
    try:
        ensemble, single = choose(rows)
    except ValueError as error:
        print(f"choose_ensemble.py: {error}", file=sys.stderr)
        return 1
    if args.members:
        print(" ".join(ensemble["members"]))
        return 0
    if args.name:
        print(ensemble_name(ensemble["members"], registry.discover().cards))
        return 0
    if for_information:
        print(f"Score: {RULE} on {args.split}, for information: the ensemble is chosen on "
              "ham10000_val.")
    else:
        print(f"Score: {RULE} (HAM10000 validation split only).")
    for row in rows:
        alone = "  (alone, not an ensemble)" if len(row["members"]) == 1 else ""
        print(f"score {row['score']:.4f}  val balanced accuracy {row['balanced_accuracy']:.4f}  "
              f"melanoma AUC {row['melanoma_auc']:.4f}  {' + '.join(row['members'])}{alone}")
    if for_information:
        print(f"Best ensemble on {args.split} (information, not the choice): "
              f"{' + '.join(ensemble['members'])} (score {ensemble['score']:.4f}); best single "
              f"model {single['members'][0]} (score {single['score']:.4f}).")
        return 0
    print(f"Chosen ensemble: {' + '.join(ensemble['members'])} (score {ensemble['score']:.4f}).")
    if single["score"] > ensemble["score"]:
        print(f"Warning: the best single model, {single['members'][0]} (score "
              f"{single['score']:.4f}), scores higher than every ensemble on validation; an "
              "ensemble is then not worth its cost as the default model.")
    else:
        print(f"It beats its best single model, {single['members'][0]} (score "
              f"{single['score']:.4f}).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
