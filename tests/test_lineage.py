"""Lineage: the parent version, the changes and the metric deltas between versions."""

import dataclasses

import pytest

from lesionlib.lineage import headline, parent_record, with_deltas


@dataclasses.dataclass
class _Card:
    id: str = "m.ham10000"
    version: str = "1.0.0"
    weights_sha256: str = "ab" * 32
    training: dict = dataclasses.field(default_factory=dict)
    metrics: dict = dataclasses.field(default_factory=lambda: {
        "ham10000_test": {"balanced_accuracy": 0.70, "melanoma_auc": 0.87,
                          "per_class": {"mel": {"recall": 0.47}}},
        "isic2017": {"melanoma_auc": 0.62}})


def test_headline_reads_top1_melanoma_recall_and_skips_missing():
    figures = headline(_Card().metrics)
    assert figures["ham10000_test/melanoma_recall_top1"] == 0.47
    assert "ph2/melanoma_auc" not in figures


def test_deltas_are_new_minus_parent_and_ancestors_accumulate():
    lineage = parent_record(_Card(), "whole-backbone fine-tuning")
    assert lineage["parent_version"] == "1.0.0" and lineage["ancestors"] == []
    new_metrics = {"ham10000_test": {"balanced_accuracy": 0.76, "melanoma_auc": 0.90,
                                     "per_class": {"mel": {"recall": 0.60}}},
                   "ph2": {"melanoma_auc": 0.8}}
    recorded = with_deltas(lineage, new_metrics)
    assert recorded["metric_deltas"]["ham10000_test/balanced_accuracy"] == pytest.approx(0.06)
    assert recorded["metric_deltas"]["ham10000_test/melanoma_recall_top1"] == pytest.approx(0.13)
    assert "ph2/melanoma_auc" not in recorded["metric_deltas"]  # the parent had no PH2 figure
    second = _Card(version="2.0.0", training={"lineage": recorded})
    grandchild = parent_record(second, "more data")
    assert grandchild["parent_version"] == "2.0.0"
    assert [entry["parent_version"] for entry in grandchild["ancestors"]] == ["1.0.0"]
