"""Print the validation balanced accuracy of every ensemble of the installed single models,
and of each model alone (an ensemble should beat its best member to be worth its cost).

Uses only the stored HAM10000 *validation* predictions (never test), so the ensemble's members
are chosen without looking at the test split. Usage: python scripts/choose_ensemble.py
"""

import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lesionlib import evaluation, metrics, registry  # noqa: E402
from lesionlib.classes import MELANOMA_INDEX  # noqa: E402


def main() -> int:
    cards = registry.discover().cards
    singles = sorted(card_id for card_id, card in cards.items() if card.kind == "single"
                     and evaluation.load_predictions(card, "ham10000_val") is not None)
    rows = []
    for size in range(1, len(singles) + 1):  # size 1: each model alone, for comparison
        for combination in itertools.combinations(singles, size):
            frames = [evaluation.load_predictions(cards[card_id], "ham10000_val")
                      for card_id in combination]
            mean = np.mean([evaluation.probabilities_of(frame) for frame in frames], axis=0)
            labels = frames[0]["label"].to_numpy()
            rows.append((metrics.balanced_accuracy(labels, mean.argmax(axis=1)),
                         metrics.melanoma_report(labels == MELANOMA_INDEX, mean[:, MELANOMA_INDEX],
                                                 0.5)["melanoma_auc"], combination))
    for balanced_accuracy, auc, combination in sorted(rows, reverse=True):
        alone = "  (alone, not an ensemble)" if len(combination) == 1 else ""
        print(f"val balanced accuracy {balanced_accuracy:.4f}  melanoma AUC {auc:.4f}  "
              f"{' + '.join(combination)}{alone}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
