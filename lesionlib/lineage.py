"""A model's lineage: which version it replaced, what changed, and how far each metric moved.

``package`` records the parent (the card it replaces in the same folder) under
``card.training["lineage"]``; ``evaluate`` adds the metric deltas once the new version's metrics
exist. Earlier generations are kept in ``lineage["ancestors"]``, so the whole history travels
with the card.
"""

from __future__ import annotations

# (set, metric) pairs tracked across versions: the figures every card headline and issue uses.
HEADLINE = (
    ("ham10000_val", "balanced_accuracy"), ("ham10000_val", "melanoma_auc"),
    ("ham10000_test", "balanced_accuracy"), ("ham10000_test", "accuracy"),
    ("ham10000_test", "melanoma_auc"), ("ham10000_test", "melanoma_recall_top1"),
    ("ham10000_test", "melanoma_sensitivity"), ("ham10000_test", "melanoma_specificity"),
    ("ham10000_test", "ece"),
    ("isic2017", "melanoma_auc"), ("isic2017", "melanoma_sensitivity"),
    ("ph2", "melanoma_auc"), ("ph2", "melanoma_sensitivity"),
)


def headline(metrics: dict) -> dict[str, float]:
    """The tracked figures of a card's ``metrics`` as ``{"set/metric": value}`` (absent: left
    out). ``melanoma_recall_top1`` is the per-class recall of mel (the top-1 answer)."""
    figures = {}
    for set_name, metric in HEADLINE:
        report = metrics.get(set_name) or {}
        value = (report.get("per_class", {}).get("mel", {}).get("recall")
                 if metric == "melanoma_recall_top1" else report.get(metric))
        if isinstance(value, (int, float)):
            figures[f"{set_name}/{metric}"] = float(value)
    return figures


def parent_record(parent_card, changes: str) -> dict:
    """The lineage of a new version that replaces ``parent_card`` (a ``ModelCard``)."""
    earlier = dict(parent_card.training.get("lineage") or {})
    ancestors = list(earlier.pop("ancestors", []))
    if earlier:
        ancestors.append(earlier)
    return {"parent_id": parent_card.id, "parent_version": parent_card.version,
            "parent_weights_sha256": parent_card.weights_sha256, "changes": changes,
            "parent_metrics": headline(parent_card.metrics), "ancestors": ancestors}


def with_deltas(lineage: dict, metrics: dict) -> dict:
    """``lineage`` plus ``metric_deltas`` (new minus parent) for every figure both have."""
    new = headline(metrics)
    parent = lineage.get("parent_metrics", {})
    deltas = {key: new[key] - parent[key] for key in new if key in parent}
    return {**lineage, "metric_deltas": deltas}


__all__ = ["HEADLINE", "headline", "parent_record", "with_deltas"]
