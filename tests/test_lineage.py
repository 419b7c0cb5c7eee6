"""Lineage: the parent version, the changes and the metric deltas between versions."""

import dataclasses

import numpy as np
import pandas as pd
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


def _fake_run(run_dir, tiny_weights_dir, recipe_changes=None):
    """A finished `train` run folder holding a tiny model as its best checkpoint."""
    import json
    import shutil

    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_weights_dir / "tiny0.test" / "model.keras", run_dir / "best.keras")
    config = {"architecture": "small_cnn", "image_size": 32, "imagenet": False,
              "head_epochs": 1, "fine_tune_epochs": 2, "batch_size": 8, "seed": 1,
              **(recipe_changes or {})}
    (run_dir / "state.json").write_text(json.dumps({"config": config, "history": []}))
    return run_dir


def test_package_records_the_replaced_version_and_evaluate_adds_deltas(tiny_weights_dir,
                                                                       tmp_path):
    import shlex

    from lesionlib import evaluation
    from lesionlib.cards import read_card, write_card
    from lesionlib.cli import main
    from lesionlib.integrity import verify_folder

    weights = tmp_path / "weights"
    run = _fake_run(tmp_path / "run1", tiny_weights_dir)
    assert main(["package", "--run-dir", str(run), "--id", "m.test", "--name", "M",
                 "--weights", str(weights)]) == 0
    first = read_card(weights / "m.test")
    assert "lineage" not in first.training and "ISIC" not in first.licence
    from lesionlib.cards import sha256_of
    assert first.training["run"] == {"folder": str(run),
                                     "checkpoint_sha256": sha256_of(run / "best.keras")}
    first_metrics = {"ham10000_test": {"balanced_accuracy": 0.5, "melanoma_auc": 0.8}}
    write_card(dataclasses.replace(first, metrics=first_metrics), weights / "m.test")

    run2 = _fake_run(tmp_path / "run2", tiny_weights_dir,
                     {"colour_constancy": True, "extra_training_sets": ["isic2017"],
                      "ema_momentum": 0.998, "fine_tune_from": "all"})
    assert main(["package", "--run-dir", str(run2), "--id", "m.test", "--name", "M",
                 "--version", "2.0.0", "--changes", "colour constancy, ISIC 2017 train",
                 "--weights", str(weights)]) == 0
    second = read_card(weights / "m.test")
    lineage = second.training["lineage"]
    assert lineage["parent_version"] == "1.0.0" and lineage["changes"].startswith("colour")
    assert lineage["parent_metrics"] == {"ham10000_test/balanced_accuracy": 0.5,
                                         "ham10000_test/melanoma_auc": 0.8}
    assert "Shades of Gray" in second.preprocessing and "ISIC 2017" in second.training["data"]
    assert "ISIC 2017" in second.licence
    train = shlex.split(second.reproduce["train"])
    for flag in ("--colour-constancy", "--ema", "--fine-tune-from", "--extra-train"):
        assert flag in train
    assert train[train.index("--extra-train") + 1] == "isic2017"

    # evaluate's last step: the deltas appear beside the new metrics, and the folder is sealed
    labels = pd.DataFrame({"image_id": list("abcd"), "label": [4, 5, 4, 5],
                           "melanoma": [1, 0, 1, 0]})
    probabilities = np.array([[0, 0, 0, 0, .9, .1, 0], [0, 0, 0, 0, .2, .8, 0],
                              [0, 0, 0, 0, .6, .4, 0], [0, 0, 0, 0, .3, .7, 0]]) + 1e-3
    frame = evaluation.prediction_frame(labels, probabilities / probabilities.sum(1, keepdims=True),
                                        "ham10000")
    card, metrics = evaluation.finish_evaluation(
        second, {"ham10000_val": frame, "ham10000_test": frame}, "python -m lesionlib evaluate")
    deltas = card.training["lineage"]["metric_deltas"]
    assert deltas["ham10000_test/balanced_accuracy"] == pytest.approx(
        metrics["ham10000_test"]["balanced_accuracy"] - 0.5)
    assert read_card(weights / "m.test").training["lineage"]["metric_deltas"] == deltas
    verify_folder(weights / "m.test")
