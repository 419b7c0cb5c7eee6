"""The shipped models: valid cards, sealed folders, stored predictions that reproduce."""

import os
import shlex

import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE_DIR
from lesionlib import evaluation, registry
from lesionlib.classes import CLASS_NAMES
from lesionlib.cards import REPO_ROOT, normalise_command
from lesionlib.cli import build_parser
from lesionlib.imaging import load_image
from lesionlib.integrity import MANIFEST_FILE, SIGNATURE_FILE, verify_folder
from lesionlib.metrics import classification_report

CATALOGUE = registry.discover()
SINGLES = sorted(card_id for card_id, card in CATALOGUE.cards.items() if card.kind == "single")


def test_every_shipped_card_is_valid_and_three_backbones_ship():
    assert not CATALOGUE.problems, CATALOGUE.problems
    architectures = {CATALOGUE.cards[card_id].architecture for card_id in SINGLES}
    assert len(architectures) >= 3, architectures
    assert "small_cnn" in architectures  # the from-scratch baseline
    assert CATALOGUE.default_id() == "ensemble.ham10000"
    assert set(CATALOGUE.cards["ensemble.ham10000"].members) <= set(SINGLES)


@pytest.mark.parametrize("model_id", sorted(CATALOGUE.cards))
def test_card_metrics_are_those_of_the_stored_predictions(model_id):
    card = CATALOGUE.cards[model_id]
    for set_name in ("ham10000_test", "isic2017", "ph2"):
        assert evaluation.load_predictions(card, set_name) is not None, set_name
    stored = evaluation.load_predictions(card, "ham10000_test")
    assert len(stored) == 1509
    recomputed = classification_report(stored["label"], evaluation.probabilities_of(stored),
                                       card.melanoma_threshold)
    for key in ("accuracy", "balanced_accuracy", "melanoma_auc", "ece"):
        assert card.metrics["ham10000_test"][key] == pytest.approx(recomputed[key], abs=1e-4)
    assert "python -m lesionlib evaluate" in card.reproduce["evaluate"]


@pytest.mark.parametrize("model_id", SINGLES + ["ensemble.ham10000"])
def test_live_predictions_match_the_stored_ones(model_id):
    classifier = registry.load_classifier(model_id, catalogue=CATALOGUE)
    samples = pd.read_csv(SAMPLE_DIR / "labels.csv")
    stored = evaluation.load_predictions(classifier.card, "ham10000_test").set_index("image_id")
    images = [load_image(SAMPLE_DIR / file) for file in samples["file"]]
    live = classifier.predict_proba(images)
    expected = stored.loc[samples["image_id"], list(CLASS_NAMES)].to_numpy()
    np.testing.assert_allclose(live, expected, atol=2e-3)


@pytest.mark.parametrize("model_id", sorted(CATALOGUE.cards))
def test_every_shipped_file_is_sealed(model_id):
    folder = CATALOGUE.cards[model_id].folder
    files = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    assert set(verify_folder(folder)) == files - {MANIFEST_FILE, SIGNATURE_FILE}
    assert {"card.json", "predictions/ham10000_test.csv"} <= files


@pytest.mark.parametrize("model_id", sorted(CATALOGUE.cards))
def test_shipped_reproduce_commands_can_be_pasted(model_id):
    for step, command in CATALOGUE.cards[model_id].reproduce.items():
        tokens = shlex.split(command)
        assert tokens[:3] == ["python", "-m", "lesionlib"], (step, command)
        assert not any(os.path.isabs(token) or str(REPO_ROOT) in token for token in tokens)
        assert normalise_command(command) == command
        build_parser().parse_args(tokens[3:])  # a command the current CLI accepts


def test_the_attribution_line_names_every_shipped_model_trained_on_bcn20000():
    """The attribution on every page: a model that learned from BCN20000 is named in it."""
    from lesionlib.attribution import attribution_note, models_by_source, short_label

    cards = list(CATALOGUE.cards.values())
    named = models_by_source(cards)["bcn20000"]
    note = attribution_note(cards)
    assert "BCN20000 (Combalia" in note and all(label in note for label in named), note
    for model_id in SINGLES:
        card = CATALOGUE.cards[model_id]
        assert (short_label(card) in named) == ("BCN20000" in card.licence), (model_id, named)