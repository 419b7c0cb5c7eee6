"""The quality / out-of-distribution gate on synthetic images and a fitted tiny gate."""

import json

import cv2
import numpy as np
import pytest
from conftest import REPO_ROOT

from lesionlib import registry
from lesionlib.integrity import seal
from lesionlib.quality import (GATE_FILE, QualityChecker, QualityGate, colourfulness,
                               extract_features, feature_extractor, fit_ensemble_gate, fit_gate,
                               normalised_entropy, prediction_findings)
from lesionlib.selective import (UncertaintyThresholds, error_ratio, flag_mask, risk_coverage,
                                 select_thresholds)


def _skin_like(seed, count):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        base = np.array([200, 150, 130]) + rng.normal(0, 8, 3)
        image = np.clip(base + rng.normal(0, 20, (150, 200, 3)), 0, 255).astype("uint8")
        cv2.circle(image, (100, 75), int(rng.integers(20, 50)), (90, 60, 50), -1)
        images.append(image)
    return images


@pytest.fixture(scope="module")
def gate():
    train = _skin_like(0, 60)
    features = np.stack([np.concatenate([img.mean(axis=(0, 1)), img.std(axis=(0, 1))])
                         for img in train])
    return fit_gate(features[:40], features[40:], train[40:], components=4, false_alarm_rate=0.0)


def test_image_checks_flag_blank_blur_and_exposure(gate):
    lesion = _skin_like(1, 1)[0]
    assert not gate.image_findings(lesion)
    codes = lambda image: {finding.code for finding in gate.image_findings(image)}  # noqa: E731
    assert "blank" in codes(np.full((150, 200, 3), 128, np.uint8))
    assert "blurred" in codes(cv2.GaussianBlur(lesion, (0, 0), 8))
    assert "dark" in codes((lesion * 0.15).astype("uint8"))
    assert "bright" in codes((255 - (255 - lesion.astype(float)) * 0.1).astype("uint8"))
    noise = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    assert "not_dermoscopic" in codes(noise) and gate.max_sharpness < np.inf


def test_gate_round_trips_through_npz(gate, tmp_path):
    path = gate.save(tmp_path / GATE_FILE)
    loaded = QualityGate.load(path)
    assert loaded.distance_threshold == pytest.approx(gate.distance_threshold)
    np.testing.assert_allclose(loaded.components, gate.components)


def test_entropy_and_disagreement_findings():
    certain = np.array([0.94, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01])
    uniform = np.full(7, 1 / 7)
    assert normalised_entropy(uniform) == pytest.approx(1.0)
    assert not prediction_findings(certain)
    assert [f.code for f in prediction_findings(uniform)] == ["uncertain"]
    other = np.roll(certain, 1)
    assert [f.code for f in prediction_findings(certain, [certain, other])] == ["disagreement"]


def _fit_tiny_gates(weights, lesions):
    """Fit a gate for each tiny member and the ensemble's combined gate (as fit-gate does)."""
    classifier = registry.load_classifier("ensemble.ham10000", weights)
    gates, features = [], []
    for member in classifier.members:
        member_features = extract_features(feature_extractor(member.keras_model),
                                           member.frame(lesions))
        gates.append(fit_gate(member_features[:30], member_features[30:], lesions[30:],
                              components=4).save(member.card.folder / GATE_FILE))
        seal(member.card.folder)  # as `fit-gate` does
        features.append(member_features[30:])
    gates = [QualityGate.load(path) for path in gates]
    ensemble = fit_ensemble_gate(classifier.card.members, gates, features, lesions[30:])
    ensemble.save(classifier.card.folder / GATE_FILE)
    seal(classifier.card.folder)
    return ensemble


def _blue_green_photo():
    photo = np.zeros((150, 200, 3), np.uint8)
    photo[:, :100] = (20, 200, 20)
    photo[:, 100:] = (20, 20, 220)
    return photo


def test_ensemble_gate_combines_its_members_gates(tiny_weights_dir, tmp_path):
    import shutil

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    lesions = _skin_like(2, 40)
    ensemble_gate = _fit_tiny_gates(weights, lesions)
    assert ensemble_gate.members == ("tiny0.test", "tiny1.test")
    assert QualityGate.load(weights / "ensemble.ham10000" / GATE_FILE).members == \
        ensemble_gate.members
    checker = QualityChecker(registry.load_classifier("ensemble.ham10000", weights))
    assert checker.gate is not None and len(checker.member_gates) == 2
    reports = checker.assess([lesions[0], _blue_green_photo()])
    assert reports[1].distance > reports[0].distance
    assert "not_dermoscopic" in {f.code for f in reports[1].findings}
    assert reports[1].withheld
    for member_id in ("tiny0.test", "tiny1.test"):  # each single model uses its own gate
        single = QualityChecker(registry.load_classifier(member_id, weights))
        assert single.gate.feature_layer == "avg_pool" and not single.gate.members


def test_missing_gate_is_flagged_never_silent(tiny_weights_dir, tmp_path):
    import shutil

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    lesion = _skin_like(3, 1)
    report = QualityChecker(registry.load_classifier("tiny0.test", weights)).assess(lesion)[0]
    assert report.findings[0].code == "no_gate" and "tiny0.test" in report.findings[0].message
    assert not report.withheld
    _fit_tiny_gates(weights, _skin_like(2, 40))
    (weights / "tiny1.test" / GATE_FILE).unlink()  # the ensemble now lacks a member's gate
    seal(weights / "tiny1.test")
    checker = QualityChecker(registry.load_classifier("ensemble.ham10000", weights))
    assert checker.gate is None and checker.missing == ["tiny1.test"]
    assert checker.assess(lesion)[0].findings[0].code == "no_gate"


def test_colourless_image_fails_and_nearly_colourless_is_a_caution(gate):
    lesion = _skin_like(0, 60)[45]  # one of the images the thresholds were fitted on
    gray = np.repeat(cv2.cvtColor(lesion, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    failed = [f for f in gate.image_findings(gray) if f.code == "no_colour"]
    assert failed and failed[0].withholds
    mean = lesion.mean(axis=2, keepdims=True)
    faded = np.clip(mean + 0.2 * (lesion - mean), 0, 255).astype("uint8")
    assert colourfulness(faded) < gate.min_colourfulness
    findings = {f.code: f for f in gate.image_findings(faded)}
    assert "grayscale" in findings and not findings["grayscale"].withholds
    assert "no_colour" not in findings
    assert not {f.code for f in gate.image_findings(lesion)} & {"grayscale", "no_colour"}


def _synthetic_scores(seed, count=4000):
    """Entropy and disagreement that rise with the chance of an error, plus noise."""
    rng = np.random.default_rng(seed)
    difficulty = rng.beta(1.2, 4.0, count)
    correct = rng.random(count) > difficulty
    entropy = np.clip(difficulty + rng.normal(0, 0.15, count), 0, 1)
    disagreement = np.clip(difficulty + rng.normal(0, 0.2, count), 0, 1)
    return entropy, disagreement, correct


def test_selected_thresholds_flag_a_clearly_riskier_minority():
    entropy, disagreement, correct = _synthetic_scores(0)
    chosen = select_thresholds(entropy, disagreement, correct)
    assert chosen.meets_rule
    flags = flag_mask(entropy, disagreement, chosen)
    assert 0 < flags.mean() <= 0.20
    assert error_ratio(flags, correct) >= 2.0
    assert flags.mean() == pytest.approx(chosen.flag_rate)
    # held out: a fresh draw of the same kind still meets the rule
    entropy, disagreement, correct = _synthetic_scores(1)
    flags = flag_mask(entropy, disagreement, chosen)
    assert flags.mean() <= 0.22 and error_ratio(flags, correct) >= 2.0
    single = select_thresholds(entropy, None, correct)
    assert single.meets_rule and single.disagreement == np.inf


def test_uninformative_scores_flag_nothing():
    rng = np.random.default_rng(0)
    entropy, correct = rng.random(2000), rng.random(2000) > 0.3
    chosen = select_thresholds(entropy, None, correct)
    assert not chosen.meets_rule
    assert not flag_mask(entropy, None, chosen).any()


def test_risk_coverage_falls_as_coverage_shrinks():
    entropy, _, correct = _synthetic_scores(2)
    curve = risk_coverage(entropy, correct)
    assert curve["coverage"].iloc[-1] == 1.0
    assert curve["risk"].iloc[-1] == pytest.approx(1 - correct.mean())
    assert curve["risk"].iloc[0] < curve["risk"].iloc[-1]


def test_fitted_thresholds_round_trip_and_drive_the_findings(gate, tmp_path):
    fitted = gate.with_uncertainty(UncertaintyThresholds(0.3, 0.1, 0.15, 3.0, True))
    loaded = QualityGate.load(fitted.save(tmp_path / GATE_FILE))
    assert loaded.uncertainty == fitted.uncertainty
    middling = np.array([0.6, 0.2, 0.05, 0.05, 0.04, 0.03, 0.03])
    assert normalised_entropy(middling) > 0.3
    codes = [f.code for f in loaded.prediction_findings(middling)]
    assert codes == ["uncertain"]
    assert "wrong 3.0x as often" in loaded.prediction_findings(middling)[0].message


def test_melanoma_caveat_comes_from_the_card():
    from types import SimpleNamespace

    from lesionlib.caveats import melanoma_caveat

    card = SimpleNamespace(metrics={
        "ham10000_test": {"melanoma_sensitivity": 0.8, "n_melanoma": 167},
        "isic2017": {"melanoma_sensitivity": 0.3469, "n_melanoma": 147},
        "ph2": {"melanoma_sensitivity": 0.275, "n_melanoma": 40}})
    text = melanoma_caveat(card)
    assert "35% of melanomas on ISIC 2017 (n=147)" in text and "28% of melanomas on PH2" in text
    assert "80%" not in text and "does not mean benign" in text
    assert "not been measured" in melanoma_caveat(SimpleNamespace(metrics={}))


def test_gate_samples_every_training_set_of_the_model(tmp_path):
    """A model trained on HAM10000 + ISIC 2017 gets its gate fitted on both (class-balanced)."""
    import types

    import pandas as pd

    from lesionlib.gate_fitting import GateFitError, extra_gate_samples

    ham, isic = tmp_path / "ham10000", tmp_path / "isic2017"
    for folder in (ham, isic):
        folder.mkdir()
    pd.DataFrame({"file": ["a.jpg"], "label": [5], "split_lesion_grouped": ["train"]}).to_csv(
        ham / "labels.csv", index=False)
    pd.DataFrame({"file": [f"{i}.jpg" for i in range(9)], "label_ham": [4, 4, 4, 4, 2, 5, 5, 5, None],
                  "split": ["train"] * 8 + ["test"]}).to_csv(isic / "labels.csv", index=False)
    card = types.SimpleNamespace(id="m", extra_training_sets=("isic2017",))
    [(frame, tag)] = extra_gate_samples(card, ham, 2)
    assert tag == "gate_isic2017_balanced"
    assert sorted(frame["label"]) == [2, 4, 4, 5, 5] and (frame["split"] == "train").all()
    assert extra_gate_samples(types.SimpleNamespace(id="m", extra_training_sets=()), ham, 2) == []
    card.extra_training_sets = ("nowhere",)
    with pytest.raises(GateFitError, match="also trained on 'nowhere'"):
        extra_gate_samples(card, ham, 2)


def test_an_ensembles_members_score_the_same_validation_clinics():
    """Lite0 v3 learned BCN20000, Lite2 v1 did not: the ensemble's gate combines each member's
    distance per image, so both members score the validation images of every clinic either
    learned from (the union), not each its own (that gave arrays of two lengths)."""
    from lesionlib.cards import validate_card_data
    from lesionlib.gate_fitting import learned_clinics

    base = json.loads((REPO_ROOT / "weights" / "small_cnn.ham10000" / "card.json").read_text())

    def card(training: dict):
        return validate_card_data({**base, "training": training})

    lite0 = card({"recipe": {"extra_training_sets": ["isic2017", "bcn20000"]}})
    lite2 = card({"recipe": {"extra_training_sets": ["isic2017"]}})
    imported = card({"data": "declared"})
    assert learned_clinics([lite0, lite2, imported]) == {"isic2017", "bcn20000"}
    assert learned_clinics([lite2]) == {"isic2017"} and learned_clinics([imported]) == set()


def test_the_unfamiliar_image_finding_does_not_claim_the_image_is_not_dermoscopic():
    """A real PH2 melanoma (IMD058) was withheld as "looks unlike the dermoscopic images": the
    gate is only unsure, so its words must not assert what the image is."""
    from lesionlib.quality import UNFAMILIAR_MESSAGE

    assert "unlike the dermoscopic" not in UNFAMILIAR_MESSAGE
    assert "may be" in UNFAMILIAR_MESSAGE and "not a dermoscopic image" in UNFAMILIAR_MESSAGE


def test_a_flagged_case_is_not_told_about_below_the_threshold():
    """Above the threshold the caveat ends on what a flag means; BCN20000 counts as another
    clinic."""
    from types import SimpleNamespace

    from lesionlib.caveats import melanoma_caveat

    card = SimpleNamespace(metrics={
        "isic2017": {"melanoma_sensitivity": 0.66, "n_melanoma": 147},
        "bcn20000_test": {"melanoma_sensitivity": 0.5, "n_melanoma": 449}})
    above = melanoma_caveat(card, above=True)
    assert "below the threshold" not in above and "not a diagnosis" in above
    assert "50% of melanomas on BCN20000 (n=449)" in above
    assert "does not mean benign" in melanoma_caveat(card, above=False)
