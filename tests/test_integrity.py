"""Model-folder integrity: any change to a file that shapes an output refuses that model only."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE_DIR
from lesionlib import evaluation, registry
from lesionlib.cli import main
from lesionlib.integrity import (MANIFEST_FILE, SIGNATURE_FILE, TRUSTED_KEYS_ENV,
                                 IntegrityError, generate_key_pair, load_private_key, seal,
                                 sign_folder, verify_folder)
from lesionlib.quality import GATE_FILE, QualityChecker, QualityGate


@pytest.fixture
def weights(tiny_weights_dir, tmp_path, monkeypatch):
    """A copy of the tiny weights with a quality gate and stored predictions, sealed."""
    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    target = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, target)
    folder = target / "tiny0.test"
    QualityGate("avg_pool", np.zeros(8), np.eye(8)[:, :2], 5.0, 3.0, 10.0, 40.0, 230.0).save(
        folder / GATE_FILE)
    frame = pd.DataFrame({"image_id": ["a", "b"], "label": [4, 5], "mel": [0.7, 0.1]})
    (folder / "predictions").mkdir()
    frame.to_csv(folder / "predictions" / "ham10000_test.csv", index=False)
    seal(folder)
    return target


def _refusal(weights, model_id="tiny0.test") -> str:
    catalogue = registry.discover(weights)
    assert model_id not in catalogue.cards
    assert "tiny1.test" in catalogue.cards  # the other models keep working
    return catalogue.problems[model_id]


def test_sealed_folders_load(weights):
    catalogue = registry.discover(weights)
    assert not catalogue.problems
    assert set(verify_folder(weights / "tiny0.test")) == {
        "card.json", "model.keras", GATE_FILE, "predictions/ham10000_test.csv"}
    assert QualityChecker(registry.load_classifier("tiny0.test", weights)).gate.min_gray_std == 3


def test_the_seal_digest_changes_with_any_sealed_file(weights):
    before = registry.discover(weights).seals["tiny0.test"]
    path = weights / "tiny0.test" / "predictions" / "ham10000_test.csv"
    path.write_text(path.read_text() + "c,6,0.2\n")
    seal(weights / "tiny0.test")
    assert registry.discover(weights).seals["tiny0.test"] != before


def test_edited_threshold_in_card_is_refused_naming_card_json(weights):
    path = weights / "tiny0.test" / "card.json"
    card = json.loads(path.read_text())
    card["melanoma_threshold"] = 0.99
    path.write_text(json.dumps(card, indent=2) + "\n")
    assert "card.json was changed after the folder was sealed" in _refusal(weights)
    assert registry.load_classifier("tiny1.test", weights).card.melanoma_threshold == 0.2
    with pytest.raises(KeyError, match="refused.*card.json"):
        registry.load_classifier("tiny0.test", weights)


def test_loosened_gate_is_refused_naming_the_gate(weights):
    path = weights / "tiny0.test" / GATE_FILE
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["min_brightness"] = np.asarray(0.0)
    arrays["distance_threshold"] = np.asarray(1e9)
    np.savez_compressed(path, **arrays)
    assert f"{GATE_FILE} was changed" in _refusal(weights)


def test_truncated_gate_is_a_refusal_not_a_traceback(weights, tmp_path, capsys):
    path = weights / "tiny0.test" / GATE_FILE
    path.write_bytes(path.read_bytes()[:100])
    assert f"{GATE_FILE} was changed" in _refusal(weights)
    images = tmp_path / "images"
    shutil.copytree(SAMPLE_DIR, images,
                    ignore=shutil.ignore_patterns("*.csv"))
    code = main(["predict", "--weights", str(weights), "--model", "tiny0.test", "--images",
                 str(images), "--out", str(tmp_path / "out.csv"), "--quiet"])
    assert code == 2
    assert GATE_FILE in capsys.readouterr().err


def test_sealed_but_unreadable_gate_is_refused_with_what_was_expected(weights):
    path = weights / "tiny0.test" / GATE_FILE
    path.write_bytes(path.read_bytes()[:100])
    seal(weights / "tiny0.test")  # even sealed, a broken gate never reaches np.load's traceback
    reason = _refusal(weights)
    assert "not a readable quality gate" in reason and "fit-gate" in reason


def test_edited_stored_predictions_are_refused(weights):
    path = weights / "tiny0.test" / "predictions" / "ham10000_test.csv"
    card = registry.discover(weights).cards["tiny0.test"]
    path.write_text(path.read_text().replace("0.7", "0.1"))
    assert "predictions/ham10000_test.csv was changed" in _refusal(weights)
    with pytest.raises(IntegrityError, match="ham10000_test.csv"):  # read after discovery
        evaluation.load_predictions(card, "ham10000_test")


@pytest.mark.parametrize("change, message", [
    (lambda folder: (folder / "model.tflite").write_bytes(b"new"),
     "model.tflite is not listed"),
    (lambda folder: (folder / "predictions" / "ham10000_test.csv").unlink(),
     "predictions/ham10000_test.csv is listed in manifest.json but missing"),
    (lambda folder: (folder / MANIFEST_FILE).unlink(), "has no manifest.json"),
    (lambda folder: shutil.copy(folder.parent / "tiny1.test" / MANIFEST_FILE, folder),
     "belongs to model 'tiny1.test'"),
    (lambda folder: (folder / MANIFEST_FILE).write_text("{"), "not valid JSON"),
])
def test_added_missing_and_foreign_files_are_refused(weights, change, message):
    change(weights / "tiny0.test")
    assert message in _refusal(weights)


def test_evaluate_of_another_model_reports_a_refusal_without_failing(weights, tmp_path, capsys):
    """Shipping evaluates a member while its ensemble is stale: ``evaluate --model ID`` names the
    refused model but succeeds; without --model any refusal fails the command."""
    (weights / "tiny0.test" / "card.json").write_text(
        (weights / "tiny0.test" / "card.json").read_text().replace('"1.0.0"', '"9.9.9"'))
    reports = tmp_path / "reports"
    code = main(["evaluate", "--summary-only", "--model", "tiny1.test", "--weights",
                 str(weights), "--report-dir", str(reports)])
    assert code == 0
    assert "REFUSED tiny0.test" in capsys.readouterr().err
    assert "tiny0.test" in json.loads((reports / "evaluation.json").read_text())["refused"]


def test_evaluate_summary_marks_a_tampered_model(weights, tmp_path, capsys):
    (weights / "tiny0.test" / "card.json").write_text(
        (weights / "tiny0.test" / "card.json").read_text().replace('"1.0.0"', '"9.9.9"'))
    reports = tmp_path / "reports"
    code = main(["evaluate", "--summary-only", "--weights", str(weights), "--report-dir",
                 str(reports)])
    assert code == 1
    assert "REFUSED tiny0.test" in capsys.readouterr().err
    summary = json.loads((reports / "evaluation.json").read_text())
    assert "tiny0.test" not in summary["models"] and "card.json" in summary["refused"][
        "tiny0.test"]
    markdown = (reports / "evaluation.md").read_text()
    assert "## Refused models" in markdown
    assert markdown.index("Refused models") < markdown.index("HAM10000 test split")


# ----------------------------------------------------------------------------- signatures

@pytest.fixture
def keys(tmp_path):
    pairs = {}
    for name in ("release", "other"):
        generate_key_pair(tmp_path / f"{name}.key", tmp_path / f"{name}.pub")
        pairs[name] = (tmp_path / f"{name}.key", tmp_path / f"{name}.pub")
    return pairs


def _sign_all(weights, private):
    key = load_private_key(private)
    for folder in sorted(path for path in weights.iterdir() if path.is_dir()):
        sign_folder(folder, key)


def test_signed_folders_load_when_signatures_are_required(weights, keys, monkeypatch):
    _sign_all(weights, keys["release"][0])
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(keys["release"][1]))
    catalogue = registry.discover(weights)
    assert not catalogue.problems and len(catalogue.cards) == 3
    assert registry.load_classifier("ensemble.ham10000", catalogue=catalogue)


def test_unsigned_folder_is_refused_when_signatures_are_required(weights, keys, monkeypatch):
    _sign_all(weights, keys["release"][0])
    (weights / "tiny0.test" / SIGNATURE_FILE).unlink()
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(keys["release"][1]))
    assert "is not signed" in _refusal(weights)


def test_signature_by_another_key_is_refused(weights, keys, monkeypatch):
    _sign_all(weights, keys["other"][0])
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(keys["release"][1]))
    catalogue = registry.discover(weights)
    assert not catalogue.cards
    assert all("does not verify against any trusted key" in reason
               for reason in catalogue.problems.values())


def test_card_edited_and_resealed_is_caught_by_the_signature(weights, keys, monkeypatch):
    _sign_all(weights, keys["release"][0])
    folder = weights / "tiny0.test"
    signature = (folder / SIGNATURE_FILE).read_bytes()
    card = json.loads((folder / "card.json").read_text())
    card["melanoma_threshold"] = 0.99
    (folder / "card.json").write_text(json.dumps(card))
    seal(folder)  # the manifest now matches the edited card...
    assert not (folder / SIGNATURE_FILE).exists()  # ...and seal drops the stale signature
    (folder / SIGNATURE_FILE).write_bytes(signature)  # an attacker puts the old one back
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(keys["release"][1]))
    assert "does not verify" in _refusal(weights)


def test_unreadable_trusted_key_refuses_every_model(weights, tmp_path, monkeypatch):
    (tmp_path / "broken.pub").write_text("not a key")
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(tmp_path / "broken.pub"))
    catalogue = registry.discover(weights)
    assert not catalogue.cards
    assert all("broken.pub" in reason for reason in catalogue.problems.values())


def test_a_changed_folder_is_never_signed(weights, keys):
    (weights / "tiny0.test" / "model.tflite").write_bytes(b"new")
    with pytest.raises(IntegrityError, match="model.tflite"):
        sign_folder(weights / "tiny0.test", load_private_key(keys["release"][0]))
    assert not (weights / "tiny0.test" / SIGNATURE_FILE).exists()


def test_sign_and_verify_commands(weights, keys, monkeypatch, capsys):
    assert main(["sign", "--key", str(keys["release"][0]), "--weights", str(weights)]) == 0
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(keys["release"][1]))
    assert main(["verify", "--weights", str(weights)]) == 0
    (weights / "tiny1.test" / SIGNATURE_FILE).unlink()
    assert main(["verify", "--weights", str(weights)]) == 1
    assert "tiny1.test: REFUSED" in capsys.readouterr().err
    assert main(["sign", "--key", str(weights / "missing.key"), "--weights", str(weights)]) == 2
    assert "not a readable PEM private key" in capsys.readouterr().err
