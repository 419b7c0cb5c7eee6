"""Write reports/retrieval.md from the shipped similar-case indices (their stored figures).

Usage: python scripts/benchmarks/retrieval_report.py [--weights weights] [--out reports/retrieval.md]
Each index's figures are measured by ``python -m lesionlib similar --build --model ID``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lesionlib import registry, retrieval  # noqa: E402
from lesionlib.classes import CLASS_NAMES  # noqa: E402

HEADER = """# Similar-case retrieval

For a case, the dashboard (Case review, Teaching quiz) and `python -m lesionlib similar` show the
k most similar HAM10000 **training** images with their diagnosis and how it was confirmed
(dx_type). Embedding: the model's `avg_pool` features, PCA to {dims} dimensions fitted on the
training split, L2-normalised; cosine nearest neighbours (scikit-learn `NearestNeighbors`), after
Tschandl et al., *Br J Dermatol* 2019. An ensemble uses its member with the best validation
balanced accuracy. Index: `weights/<id>/retrieval.npz` (float16, with the model's version and
weights sha256; a stale index is refused).

Measured on the lesion-grouped HAM10000 **test** split (queries) against the **training** split
(no lesion in both). *Class-balanced precision@k*: per query, the share of its k neighbours with
the query's diagnosis; averaged within each class, then over classes. *Majority vote*: the most
frequent diagnosis among the k neighbours (ties: the nearest), scored by balanced accuracy
beside the classifier's own balanced accuracy on the same images (from its card).

"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--out", default="reports/retrieval.md")
    args = parser.parse_args()
    catalogue = registry.discover(args.weights)
    rows, per_class, dims = [], [], None
    for model_id, card in sorted(catalogue.cards.items()):
        if card.kind != "single" or not retrieval.index_path(card).is_file():
            continue
        index, _ = retrieval.load_index(card, catalogue)  # refuses a stale index
        metrics, dims = index.metrics, index.components.shape[1]
        classifier = card.metrics.get("ham10000_test", {})
        size = retrieval.index_path(card).stat().st_size / 1e6
        rows.append(f"| `{model_id}` v{card.version} | {metrics['k']} | "
                    f"{metrics['precision_at_k']:.3f} | "
                    f"{metrics['majority_vote_balanced_accuracy']:.3f} | "
                    f"{classifier.get('balanced_accuracy', float('nan')):.3f} | "
                    f"{metrics['n_queries']} | {size:.2f} MB | `{metrics['command']}` |")
        recall = classifier.get("per_class", {})
        per_class.append(f"| `{model_id}` | " + " | ".join(
            f"{metrics['per_class_precision_at_k'].get(name, float('nan')):.2f} / "
            f"{recall.get(name, {}).get('recall', float('nan')):.2f}" for name in CLASS_NAMES)
            + " |")
    if not rows:
        print("No similar-case index found; build one with "
              "`python -m lesionlib similar --build --model ID`.", file=sys.stderr)
        return 2
    text = HEADER.format(dims=dims) + "\n".join([
        "| model | k | class-balanced precision@k | majority-vote balanced acc. | "
        "classifier balanced acc. | test queries | index size | built by |",
        "|---|---|---|---|---|---|---|---|", *rows, "",
        "Per class: precision@k of the neighbours / the classifier's recall.", "",
        "| model | " + " | ".join(CLASS_NAMES) + " |",
        "|---|" + "---|" * len(CLASS_NAMES), *per_class, "",
        "Written by `python scripts/benchmarks/retrieval_report.py`.", ""])
    Path(args.out).write_text(text)
    print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
