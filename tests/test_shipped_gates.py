"""Every shipped model carries its own quality gate and fitted "review carefully" thresholds."""

import numpy as np
import pytest

from lesionlib import registry
from lesionlib.quality import GATE_FILE, QualityChecker, load_gate

CATALOGUE = registry.discover()


@pytest.mark.parametrize("model_id", sorted(CATALOGUE.cards))
def test_every_shipped_model_has_its_own_gate(model_id):
    card = CATALOGUE.cards[model_id]
    gate = load_gate(card)
    assert gate is not None, f"{card.folder / GATE_FILE} is missing: run fit-gate"
    assert gate.uncertainty.meets_rule and gate.flag_rate_val <= 0.2
    assert gate.error_ratio_val >= 2.0 and np.isfinite(gate.entropy_threshold)
    if card.kind == "ensemble":
        assert gate.members == card.members and np.isfinite(gate.disagreement_threshold)
        assert all(load_gate(CATALOGUE.cards[member]) is not None for member in card.members)
    else:
        assert gate.feature_layer == "avg_pool" and not gate.members


@pytest.mark.parametrize("model_id", sorted(CATALOGUE.cards))
def test_blank_and_noise_images_are_withheld_by_every_model(model_id):
    checker = QualityChecker(registry.load_classifier(model_id, catalogue=CATALOGUE))
    assert checker.gate is not None and not checker.missing
    rng = np.random.default_rng(0)
    blank = np.full((150, 200, 3), 128, np.uint8)
    noise = rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)
    reports = checker.assess([blank, noise])
    assert reports[0].withheld and {"blank", "no_colour"} <= {
        finding.code for finding in reports[0].gate_failures}
    assert reports[1].withheld, reports[1].text
