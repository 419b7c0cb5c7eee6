"""Label-issue audit: suspects from synthetic out-of-sample probabilities, dx_type tables, report."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT
from lesionlib import label_audit, registry
from lesionlib.classes import CLASS_NAMES

FLIPPED = 6  # images per run whose given label is deliberately wrong


def synthetic_predictions(seed: int = 0, per_class: int = 40) -> tuple[pd.DataFrame, set]:
    """A confident, mostly right model's probabilities; ``FLIPPED`` labels changed to another
    class (those images' probabilities still point, confidently, at their true class)."""
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(len(CLASS_NAMES)), per_class)
    logits = rng.normal(scale=0.5, size=(len(true), len(CLASS_NAMES)))
    logits[np.arange(len(true)), true] += 4.0
    flipped = rng.choice(len(true), FLIPPED, replace=False)
    # confident learning counts an image only where its probability of the other class reaches
    # that class's mean: the flipped images are ones the model is sure about
    logits[flipped, true[flipped]] += 3.0
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    given = true.copy()
    given[flipped] = (true[flipped] + 1) % len(CLASS_NAMES)
    frame = pd.DataFrame(probabilities, columns=list(CLASS_NAMES))
    frame.insert(0, "image_id", [f"ISIC_{index:07d}" for index in range(len(true))])
    frame["label"] = given
    frame["true_class"] = [CLASS_NAMES[label] for label in given]
    frame["dx_type"] = np.where(np.arange(len(true)) % 2 == 0, "histo", "consensus")
    frame["dataset"] = "synthetic"
    frame["set_folder"], frame["file"] = "ham10000", "images/x.jpg"
    return frame, set(frame["image_id"].iloc[flipped])


def test_flipped_labels_are_found_first_with_the_true_class_suggested():
    frame, flipped = synthetic_predictions()
    suspects = label_audit.find_suspects(frame)
    assert list(suspects.columns) == list(label_audit.SUSPECT_COLUMNS)
    assert set(suspects["image_id"].head(FLIPPED)) == flipped
    assert suspects["rank"].tolist() == list(range(1, len(suspects) + 1))
    assert (np.diff(suspects["given_label_probability"]) >= 0).all()  # lowest first
    truth = frame.set_index("image_id")[list(CLASS_NAMES)].idxmax(axis=1)
    top = suspects.head(FLIPPED)
    assert (top["suggested_label"].to_numpy() == truth[top["image_id"]].to_numpy()).all()
    assert (top["given_label"] != top["suggested_label"]).all()
    assert (suspects["suggested_label_probability"] >= suspects["given_label_probability"]).all()


def test_clean_confident_labels_give_no_suspects():
    frame, flipped = synthetic_predictions()
    frame["label"] = frame[list(CLASS_NAMES)].to_numpy().argmax(axis=1)
    assert label_audit.find_suspects(frame).empty


def test_unlabelled_rows_are_left_out_and_one_class_is_refused():
    frame, _ = synthetic_predictions()
    frame.loc[:9, "label"] = -1
    suspects = label_audit.find_suspects(frame)
    assert not set(frame["image_id"].head(10)) & set(suspects["image_id"])
    with pytest.raises(ValueError, match="at least two classes; received 5 labelled"):
        label_audit.find_suspects(frame.assign(label=0).head(5))


def test_dx_type_tables_count_images_and_suspects():
    images = pd.DataFrame({"dx_type": ["histo"] * 6 + ["follow_up"] * 3 + ["consensus"],
                           "true_class": ["mel"] * 6 + ["nv"] * 4})
    suspects = pd.DataFrame({"dx_type": ["histo", "histo", "consensus"],
                             "given_label": ["mel", "mel", "nv"]})
    table = label_audit.dx_type_table(images, suspects).set_index("dx_type")
    assert list(table.index) == ["histo", "follow_up", "consensus", "all"]  # fixed order
    assert table.loc["histo", "images"] == 6 and table.loc["histo", "suspects"] == 2
    assert table.loc["histo", "flagged"] == pytest.approx(2 / 6)
    assert table.loc["follow_up", "suspects"] == 0
    assert table.loc["consensus", "share_of_suspects"] == pytest.approx(1 / 3)
    assert table.loc["all", "images"] == 10 and table.loc["all", "suspects"] == 3
    by_class = label_audit.class_dx_type_table(images, suspects).set_index("class")
    assert by_class.loc["mel", "histo"] == "2 / 6" and by_class.loc["mel", "follow_up"] == ""
    assert by_class.loc["nv", "follow_up"] == "0 / 3" and by_class.loc["nv", "consensus"] == "1 / 1"


class FakeCard:
    id, version = "fake.model", "1.2.3"


def test_audit_joins_val_and_test_and_names_what_is_missing():
    frame, flipped = synthetic_predictions()
    half = len(frame) // 2
    audit = label_audit.audit_frames(FakeCard(), {"ham10000_val": frame.iloc[:half],
                                                  "ham10000_test": frame.iloc[half:],
                                                  "isic2017": frame})
    assert audit.sets == ("ham10000_val", "ham10000_test") and len(audit.images) == len(frame)
    assert set(audit.suspects["set"]) <= {"ham10000_val", "ham10000_test"}
    assert flipped <= set(audit.suspects["image_id"])
    assert audit.by_dx_type.set_index("dx_type").loc["all", "suspects"] == len(audit.suspects)
    with pytest.raises(ValueError, match="fake.model stores no predictions on ham10000_val or "
                                         "ham10000_test; run `python -m lesionlib evaluate"):
        label_audit.audit_frames(FakeCard(), {"ham10000_val": None, "isic2017": frame})


def test_agreement_counts_the_models_flagging_each_image():
    def audit(model_id, ids):
        suspects = pd.DataFrame({"image_id": ids, "given_label": "nv", "dx_type": "histo"})
        return label_audit.LabelAudit(model_id, "1", ("ham10000_test",), pd.DataFrame(),
                                      suspects)

    table = label_audit.agreement([audit("a", ["x", "y"]), audit("b", ["y", "z"])])
    assert table["image_id"].tolist() == ["y", "x", "z"]
    assert table["models"].tolist() == [2, 1, 1] and table["flagged_by"].iloc[0] == "a, b"


@pytest.mark.slow
def test_report_script_on_tiny_models(tiny_weights_dir, tmp_path, monkeypatch, capsys):
    from page_fixtures import add_fake_predictions

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    add_fake_predictions(weights)
    sys.path.insert(0, str(REPO_ROOT / "scripts" / "benchmarks"))
    import label_audit_report

    out = tmp_path / "label_audit.md"
    monkeypatch.setattr(sys, "argv", ["label_audit_report.py", "--weights", str(weights),
                                      "--out", str(out)])
    assert label_audit_report.main() == 0
    report = out.read_text()
    catalogue = registry.discover(weights)
    audits = [label_audit.audit_model(catalogue.cards[model_id])
              for model_id in ("ensemble.ham10000", "tiny0.test", "tiny1.test")]
    for audit in audits:
        assert f"## `{audit.model_id}` v{audit.model_version}" in report
        assert f"**{len(audit.suspects):,} suspects**" in report
    assert "| dx_type | confirmation | images | suspects |" in report
    assert "Suspects flagged by every single model (tiny0.test, tiny1.test)" in report
    assert "ensemble.ham10000" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["label_audit_report.py", "--weights", str(weights),
                                      "--out", str(out), "--model", "nope"])
    assert label_audit_report.main() == 2
    assert "Unknown model 'nope'" in capsys.readouterr().err


def test_the_audit_runs_in_one_process_even_on_a_many_core_machine(monkeypatch):
    """cleanlab forks a worker per physical core by default; inside the dashboard's server those
    workers never exited and the Label issues tab hung. The audit must not start any."""
    import multiprocessing

    def no_pool(*args, **kwargs):
        raise AssertionError("the label audit started worker processes")

    try:
        import psutil  # cleanlab counts physical cores with it when installed
        monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 8)
    except ImportError:
        pass
    monkeypatch.setattr(multiprocessing, "cpu_count", lambda: 8)
    monkeypatch.setattr(multiprocessing, "Pool", no_pool)
    frame, flipped = synthetic_predictions()
    suspects = label_audit.find_suspects(frame)
    assert flipped <= set(suspects["image_id"])
