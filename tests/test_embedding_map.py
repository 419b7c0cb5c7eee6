"""Embedding map: layout and its faithfulness scores, the sealed file, freshness, the CLI."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT, SAMPLE_DIR
from lesionlib import embedding_map, registry
from lesionlib.cli import main
from lesionlib.integrity import seal

SHIPPED = ("efficientnet_lite0.ham10000", "efficientnet_lite2.ham10000")


def clusters(seed: int = 0, per_cluster: int = 30, dimensions: int = 64):
    """Three well-separated Gaussian clusters and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10.0, size=(3, dimensions))
    labels = np.repeat(np.arange(3), per_cluster)
    return centres[labels] + rng.normal(size=(len(labels), dimensions)), labels


def test_layout_is_two_dimensional_and_reproducible():
    features, _ = clusters()
    first, parameters = embedding_map.layout(features, seed=3)
    again, _ = embedding_map.layout(features, seed=3)
    assert first.shape == (len(features), 2) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert parameters["seed"] == 3 and parameters["perplexity"] == pytest.approx(89 / 3)
    assert parameters["pca_dimensions"] == 50  # min(PCA_DIMENSIONS, n=90, d=64)
    linear, linear_parameters = embedding_map.layout(features, "pca")
    assert linear.shape == (len(features), 2) and "perplexity" not in linear_parameters


def test_layout_refuses_unknown_methods_and_too_few_rows():
    with pytest.raises(ValueError, match="method='umap': expected one of"):
        embedding_map.layout(np.zeros((10, 3)), "umap")
    with pytest.raises(ValueError, match=r"at least 4 feature rows .* received shape \(3, 5\)"):
        embedding_map.layout(np.zeros((3, 5)))


def test_scores_separate_a_faithful_map_from_noise():
    features, labels = clusters()
    coordinates, _ = embedding_map.layout(features)
    faithful = embedding_map.neighbourhood_scores(features, coordinates, labels)
    assert faithful["trustworthiness"] > 0.9
    assert faithful["class_precision_at_k_features"] == pytest.approx(1.0)
    assert faithful["class_precision_at_k_map"] == pytest.approx(1.0)
    noise = np.random.default_rng(1).normal(size=coordinates.shape)
    scrambled = embedding_map.neighbourhood_scores(features, noise, labels)
    assert scrambled["trustworthiness"] < faithful["trustworthiness"] - 0.2
    assert scrambled["class_precision_at_k_map"] < 0.7
    assert scrambled["k"] == embedding_map.NEIGHBOURS and scrambled["n"] == len(labels)


def test_predictions_add_prediction_and_correctness():
    frame = pd.DataFrame({"image_id": ["a", "b", "c"], "true_class": ["nv", "mel", "bcc"]})
    stored = pd.DataFrame({"image_id": ["a", "b"], "prediction": ["nv", "nv"],
                           "confidence": [0.9, 0.6]})
    joined = embedding_map.with_predictions(frame, stored)
    assert joined["prediction"].tolist() == ["nv", "nv", ""]
    assert joined["correctness"].tolist() == ["correct", "wrong", "no prediction"]
    assert set(embedding_map.with_predictions(frame, None)["correctness"]) == {"no prediction"}


def sample_frame() -> pd.DataFrame:
    frame = pd.read_csv(SAMPLE_DIR / "labels.csv")
    frame["path"] = [str(SAMPLE_DIR / file) for file in frame["file"]]
    return frame


def build_sample_map(weights: Path, model_id: str = "tiny0.test") -> Path:
    """A map of a tiny model over the bundled samples (standing in for the test split)."""
    from lesionlib.data import load_images

    card = registry.discover(weights).cards[model_id]
    frame = sample_frame()
    result = embedding_map.build_map(registry.load_single(card), frame,
                                     load_images(list(frame["path"]), card.input_size),
                                     "ham10000_test")
    path = result.save(embedding_map.map_path(card))
    seal(card.folder)  # as `embedding-map` does
    return path


@pytest.fixture
def mapped_weights(tiny_weights_dir, tmp_path) -> Path:
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    build_sample_map(weights)
    return weights


def test_map_round_trip_through_the_sealed_folder(mapped_weights):
    catalogue = registry.discover(mapped_weights)
    assert "tiny0.test" in catalogue.cards  # the resealed folder is still accepted
    card = catalogue.cards["tiny0.test"]
    result, embedder = embedding_map.load_map(card, catalogue)
    assert embedder.id == "tiny0.test" and len(result) == 21
    assert (result.model_id, result.weights_sha256) == (card.id, card.weights_sha256)
    frame = result.frame()
    samples = sample_frame()
    assert frame["image_id"].tolist() == samples["image_id"].tolist()
    assert frame["true_class"].tolist() == samples["dx"].tolist()
    assert frame["dx_type"].tolist() == samples["dx_type"].tolist()
    assert set(frame["dataset"]) == {"unknown"}  # the samples' labels.csv has no dataset column
    assert np.isfinite(frame[["x", "y"]].to_numpy()).all()
    assert 0.0 < result.metrics["trustworthiness"] <= 1.0
    assert result.parameters["perplexity"] == pytest.approx(20 / 3)


def test_ensembles_use_a_member_and_edge_models_their_parent(mapped_weights):
    catalogue = registry.discover(mapped_weights)
    scores = {"tiny0.test": 0.6, "tiny1.test": 0.4}  # the best by validation is tiny0
    catalogue.cards.update({model_id: dataclasses.replace(
        catalogue.cards[model_id], metrics={"ham10000_val": {"balanced_accuracy": score}})
        for model_id, score in scores.items()})
    _, embedder = embedding_map.load_map(catalogue.cards["ensemble.ham10000"], catalogue)
    assert embedder.id == "tiny0.test"
    edge = dataclasses.replace(catalogue.cards["tiny1.test"], id="tiny0.test.int8", kind="edge",
                               edge={"parent": "tiny0.test"})
    _, embedder = embedding_map.load_map(edge, catalogue)  # an edge model: its parent's map
    assert embedder.id == "tiny0.test"


def tiny_dataset(folder: Path) -> Path:
    """A HAM10000-shaped folder of the 21 samples, all in the test split."""
    (folder / "images").mkdir(parents=True)
    frame = pd.read_csv(SAMPLE_DIR / "labels.csv")
    for file in frame["file"]:
        shutil.copy(SAMPLE_DIR / file, folder / "images" / file)
    frame = frame.assign(file="images/" + frame["file"], dataset="sample",
                         split_lesion_grouped="test").drop(columns=["split"])
    frame.to_csv(folder / "labels.csv", index=False)
    return folder


@pytest.mark.slow
def test_cli_builds_and_seals_the_map(tiny_weights_dir, tmp_path, monkeypatch, capsys):
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    monkeypatch.setattr("lesionlib.data.CACHE_DIR", tmp_path / "cache")
    data = tiny_dataset(tmp_path / "ham10000")
    code = main(["embedding-map", "--model", "ensemble.ham10000", "--weights", str(weights),
                 "--data", str(data)])
    assert code == 0
    out = capsys.readouterr().out
    assert "ensemble.ham10000 is an ensemble model: mapping the features of tiny" in out
    assert "Map written to" in out and "Trustworthiness (k=5)" in out
    catalogue = registry.discover(weights)
    result, embedder = embedding_map.load_map(catalogue.cards["ensemble.ham10000"], catalogue)
    assert len(result) == 21 and set(result.datasets) == {"sample"}
    assert result.set_name == "ham10000_test" and result.method == "tsne"


def test_cli_says_what_is_missing(tiny_weights_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LESIONLIB_DATA", str(tmp_path))
    code = main(["embedding-map", "--model", "tiny1.test", "--weights", str(tiny_weights_dir)])
    assert code == 2 and "No ham10000 dataset folder" in capsys.readouterr().err
    code = main(["embedding-map", "--model", "nope", "--weights", str(tiny_weights_dir)])
    assert code == 2 and "Unknown model 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("model_id", SHIPPED)
def test_shipped_map_is_current_and_measured(model_id):
    catalogue = registry.discover(REPO_ROOT / "weights")
    card = catalogue.cards[model_id]
    path = embedding_map.map_path(card)
    assert path.is_file(), f"run `{embedding_map.build_command(model_id)}`"
    assert path.stat().st_size < 500_000
    result, embedder = embedding_map.load_map(card, catalogue)  # raises when stale
    assert embedder.id == model_id and len(result) == 1509
    assert result.set_name == "ham10000_test" and result.method == "tsne"
    assert set(result.dx_types) == {"histo", "follow_up", "consensus", "confocal"}
    assert 0.5 < result.metrics["trustworthiness"] <= 1.0
