"""The quality / out-of-distribution gate on synthetic images and a fitted tiny gate."""

import cv2
import numpy as np
import pytest

from lesionlib import registry
from lesionlib.integrity import seal
from lesionlib.quality import (GATE_FILE, QualityChecker, QualityGate, extract_features,
                               feature_extractor, fit_gate, normalised_entropy,
                               prediction_findings)


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


def test_checker_uses_the_member_gate_and_flags_far_images(tiny_weights_dir, tmp_path):
    import shutil

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    classifier = registry.load_classifier("ensemble.ham10000", weights)
    member = classifier.members[0]
    lesions = _skin_like(2, 40)
    extractor = feature_extractor(member.keras_model)
    features = extract_features(extractor, member.frame(lesions))
    fit_gate(features[:30], features[30:], lesions[30:], components=4).save(
        member.card.folder / GATE_FILE)
    seal(member.card.folder)  # as `fit-gate` does
    checker = QualityChecker(registry.load_classifier("ensemble.ham10000", weights))
    photo = np.zeros((150, 200, 3), np.uint8)
    photo[:, :100] = (20, 200, 20)
    photo[:, 100:] = (20, 20, 220)
    reports = checker.assess([lesions[0], photo])
    assert reports[1].distance > reports[0].distance
    assert "not_dermoscopic" in {f.code for f in reports[1].findings}
