"""The shipped models: valid cards, matching hashes, stored predictions that reproduce."""

import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE_DIR
from lesionlib import evaluation, registry
from lesionlib.classes import CLASS_NAMES
from lesionlib.imaging import load_image
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
