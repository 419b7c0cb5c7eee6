"""The compiled pass changes nothing but speed: the same probabilities, gate features, quality
reports, predict rows and heatmaps (tf-keras-vis's, within float tolerance) as the eager path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lesionlib import compiled, explain, registry
from lesionlib.inference import predict_files
from lesionlib.quality import QualityChecker, extract_features, feature_extractor

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((REPO_ROOT / "sample_images").glob("*.jpg"))
SHIPPED = REPO_ROOT / "weights" / "ensemble.ham10000" / "card.json"


def _images(count: int = 4) -> list[np.ndarray]:
    from lesionlib.imaging import load_image

    return [load_image(path) for path in SAMPLES[:count]]


def _eager_probabilities(member, images) -> np.ndarray:
    return member.keras_model(member.frame(images), training=False).numpy()


@pytest.fixture(scope="module")
def tiny_ensemble(tiny_weights_dir):
    return registry.load_classifier("ensemble.ham10000", tiny_weights_dir)


def test_compiled_probabilities_and_features_match_the_eager_model(tiny_ensemble):
    images = _images()
    scores = tiny_ensemble.score(images)
    for member, features in zip(tiny_ensemble.members, scores.member_features):
        assert member.compiled is not None
        probabilities, _ = member.predict_framed(member.frame(images))
        np.testing.assert_allclose(probabilities, _eager_probabilities(member, images),
                                   atol=1e-6)
        eager_features = extract_features(feature_extractor(member.keras_model),
                                           member.frame(images))
        np.testing.assert_allclose(features, eager_features, rtol=1e-5, atol=1e-6)


def test_single_image_pass_gives_the_batch_outputs_and_is_reused(tiny_ensemble, monkeypatch):
    image = _images(1)
    batch = tiny_ensemble.score(image)
    single = tiny_ensemble.score(image, with_heatmaps=True)
    np.testing.assert_allclose(single.probabilities, batch.probabilities, atol=1e-6)
    for features, batch_features in zip(single.member_features, batch.member_features):
        np.testing.assert_allclose(features, batch_features, rtol=1e-5, atol=1e-6)
    member = tiny_ensemble.members[0]
    calls = []
    traced = member.compiled._analyse
    monkeypatch.setattr(member.compiled, "_analyse",
                        lambda framed: calls.append(1) or traced(framed))
    explain.Explainer(member).compute_map(image[0], 2)  # from the prediction's pass
    explain.Explainer(member).compute_map(image[0], 5, "Grad-CAM++")
    assert calls == []
    with pytest.raises(ValueError, match="class_index must be 0 to 6; received 7"):
        member.compiled.cam_inputs(member.frame(image), 7)


def test_quality_reports_are_the_same_with_features_from_the_pass(tiny_weights_dir, tmp_path):
    import shutil

    from test_quality import _fit_tiny_gates, _skin_like

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    _fit_tiny_gates(weights, _skin_like(2, 40))
    ensemble = registry.load_classifier("ensemble.ham10000", weights)
    images = _images() + [np.full((150, 200, 3), 128, np.uint8)]
    checker = QualityChecker(ensemble)
    assert checker.gate is not None
    scores = ensemble.score(images)
    reused = checker.assess(images, scores.probabilities, scores.member_probabilities,
                            scores.member_features)
    recomputed = checker.assess(images, scores.probabilities, scores.member_probabilities)
    assert [report.findings for report in reused] == [report.findings for report in recomputed]
    np.testing.assert_allclose([report.distance for report in reused],
                               [report.distance for report in recomputed], rtol=1e-5)


def test_predict_rows_match_an_eager_reference(tiny_ensemble):
    frame = predict_files(tiny_ensemble, SAMPLES[:5], batch_size=2,
                          quality_check=QualityChecker(tiny_ensemble).assess)
    images = _images(5)
    members = [registry.apply_temperature(_eager_probabilities(member, images),
                                          member.card.temperature)
               for member in tiny_ensemble.members]
    expected = registry.apply_temperature(np.mean(members, axis=0),
                                          tiny_ensemble.card.temperature)
    columns = list(tiny_ensemble.card.class_names)
    np.testing.assert_allclose(frame[columns].to_numpy(float), expected, atol=1e-6)
    assert list(frame["file"]) == [str(path) for path in SAMPLES[:5]]


def test_decoding_errors_keep_their_rows_in_order(tiny_ensemble, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    files = [SAMPLES[0], broken, SAMPLES[1], tmp_path / "missing.jpg", SAMPLES[2]]
    frame = predict_files(tiny_ensemble, files, batch_size=2)
    assert list(frame["file"]) == [str(path) for path in files]
    assert list(frame["error"] != "") == [False, True, False, True, False]
    assert isinstance(frame, pd.DataFrame)


@pytest.mark.parametrize("method", explain.METHODS)
def test_compiled_heatmaps_match_tf_keras_vis(tiny_ensemble, method):
    image = _images(1)[0]
    for member in tiny_ensemble.members:
        for class_index in (0, 4):
            fast = explain.Explainer(member).compute_map(image, class_index, method)
            reference = explain.Explainer(member, use_compiled=False).compute_map(
                image, class_index, method)
            assert fast.shape == reference.shape
            np.testing.assert_allclose(fast, reference, atol=2e-3)


def test_cam_layer_is_sought_as_tf_keras_vis_seeks_it(tiny_ensemble):
    member = tiny_ensemble.members[0]
    assert compiled.find_cam_layer(member.keras_model, "top_activation").name == "conv3_1"
    with pytest.raises(compiled.NotCompilableError, match="not in the model"):
        compiled.find_cam_layer(member.keras_model, "no_such_layer")


def test_scorecam_rejects_a_bad_channel_count(tiny_ensemble):
    member = tiny_ensemble.members[0]
    framed = member.frame(_images(1))
    inputs = member.compiled.cam_inputs(framed, 0)
    with pytest.raises(ValueError, match="max_channels must be 1 to"):
        compiled.scorecam_map(member.compiled, framed, inputs, 0, 0)


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped models not in weights/")
def test_shipped_ensemble_outputs_and_heatmaps_are_unchanged():
    model = registry.load_classifier("ensemble.ham10000")
    images = _images(6)
    for member in model.members:
        probabilities, _ = member.predict_framed(member.frame(images))
        np.testing.assert_allclose(probabilities, _eager_probabilities(member, images),
                                   atol=1e-5)
        for method in explain.METHODS:
            fast = explain.Explainer(member).compute_map(images[0], 4, method)
            reference = explain.Explainer(member, use_compiled=False).compute_map(
                images[0], 4, method)
            np.testing.assert_allclose(fast, reference, atol=5e-3)
