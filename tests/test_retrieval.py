"""Similar-case retrieval: scores, index building, freshness, the CLI, the shipped indices."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT, SAMPLE_DIR
from lesionlib.integrity import seal
from lesionlib import registry, retrieval
from lesionlib.cli import main

SHIPPED = ("efficientnet_lite0.ham10000", "efficientnet_lite2.ham10000")


def build_sample_index(weights: Path, model_id: str = "tiny0.test") -> Path:
    """An index of a tiny model over the bundled samples (standing in for the training set)."""
    card = registry.discover(weights).cards[model_id]
    model = registry.load_single(card)
    samples = pd.read_csv(SAMPLE_DIR / "labels.csv")
    framed = model.frame([retrieval_image(file) for file in samples["file"]])
    index = retrieval.build_index(model, samples, framed, samples, framed, dimensions=8,
                                  description="the bundled samples")
    scores = retrieval.evaluate_index(retrieval.Retriever(index, model), samples["label"],
                                      framed)
    path = dataclasses.replace(index, metrics=scores).save(retrieval.index_path(card))
    seal(card.folder)  # as `similar --build` does
    return path


def retrieval_image(file: str) -> np.ndarray:
    from lesionlib.imaging import load_image

    return load_image(SAMPLE_DIR / file)


@pytest.fixture
def indexed_weights(tiny_weights_dir, tmp_path) -> Path:
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    build_sample_index(weights)
    return weights


def test_scores_by_hand():
    queries = np.array([0, 0, 1])
    neighbours = np.array([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    scores = retrieval.retrieval_scores(queries, neighbours)
    # class 0: (2/5 + 5/5) / 2 = 0.7; class 1: 1/5 -> mean 0.45
    assert scores["precision_at_k"] == pytest.approx(0.45)
    assert scores["per_class_precision_at_k"] == {"akiec": pytest.approx(0.7),
                                                  "bcc": pytest.approx(0.2)}
    # votes: 1, 0, 0 -> recall of class 0 is 1/2, of class 1 is 0
    assert scores["majority_vote_balanced_accuracy"] == pytest.approx(0.25)
    assert scores["k"] == 5 and scores["n_queries"] == 3


def test_majority_vote_ties_go_to_the_nearest():
    assert retrieval.majority_vote(np.array([[2, 1, 1, 2, 3], [4, 5, 5, 4, 4]])).tolist() == [2, 4]


def test_index_round_trip_and_neighbours(indexed_weights):
    card = registry.discover(indexed_weights).cards["tiny0.test"]
    path = retrieval.index_path(card)
    index = retrieval.RetrievalIndex.load(path)
    assert path.stat().st_size < 100_000
    assert index.training.embeddings.dtype == np.float16
    assert index.components.shape[1] == 8 and len(index.training) == 21
    assert (index.model_id, index.weights_sha256) == (card.id, card.weights_sha256)
    assert index.metrics["k"] == 5 and index.metrics["n_queries"] == 21
    retriever = retrieval.Retriever(index, registry.load_single(card))
    image = retrieval_image("ISIC_0024904.jpg")
    nearest = retriever.similar([image], k=3)[0]
    assert nearest["image_id"].iloc[0] == "ISIC_0024904"  # itself, when not excluded
    assert nearest["similarity"].iloc[0] == pytest.approx(1.0, abs=1e-2)
    assert nearest["rank"].tolist() == [1, 2, 3]
    assert (np.diff(nearest["distance"]) >= 0).all()
    assert set(nearest.columns) >= {"dx", "dx_type", "lesion_id"}
    excluded = retriever.similar([image], k=3, exclude_ids=[{"ISIC_0024904"}])[0]
    assert "ISIC_0024904" not in set(excluded["image_id"]) and len(excluded) == 3


def test_ensemble_uses_its_best_member_by_validation(tiny_weights_dir):
    cards = registry.discover(tiny_weights_dir)
    scores = {"tiny0.test": 0.4, "tiny1.test": 0.6}
    cards.cards.update({model_id: dataclasses.replace(
        cards.cards[model_id], metrics={"ham10000_val": {"balanced_accuracy": score}})
        for model_id, score in scores.items()})
    ensemble = cards.cards["ensemble.ham10000"]
    assert retrieval.embedding_card(ensemble, cards).id == "tiny1.test"
    assert retrieval.embedding_card(cards.cards["tiny0.test"], cards).id == "tiny0.test"


def test_similar_cli_writes_rows_and_error_rows(indexed_weights, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for file in ("ISIC_0024904.jpg", "ISIC_0025250.jpg"):
        shutil.copy(SAMPLE_DIR / file, images / file)
    (images / "broken.jpg").write_bytes(b"not an image")
    shutil.copy(SAMPLE_DIR / "ISIC_0024904.jpg", images / '=HYPERLINK("http---x","c").jpg')
    out = tmp_path / "similar.csv"
    code = main(["similar", "--model", "ensemble.ham10000", "--weights", str(indexed_weights),
                 "--images", str(images), "--k", "4", "--out", str(out)])
    assert code == 0
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame.columns[:5]) == ["file", "rank", "neighbour_id", "neighbour_label",
                                       "distance"]
    broken = frame[frame["file"] == "broken.jpg"]
    assert len(broken) == 1 and broken["error"].iloc[0] != ""
    for file in ("ISIC_0024904.jpg", "ISIC_0025250.jpg"):
        rows = frame[frame["file"] == file]
        assert rows["rank"].astype(int).tolist() == [1, 2, 3, 4]
        assert Path(file).stem not in set(rows["neighbour_id"])  # the query itself is left out
    assert set(frame["embedding_model_id"]) == {"tiny0.test"}
    assert "1 unreadable" in capsys.readouterr().out
    assert not any(name[:1] in "=+-@" for name in frame["file"])  # no spreadsheet formula
    assert (frame["file"] == "'=HYPERLINK(\"http---x\",\"c\").jpg").sum() == 4


def test_similar_cli_without_index_or_data_says_what_is_needed(tiny_weights_dir, tmp_path,
                                                               monkeypatch, capsys):
    code = main(["similar", "--model", "tiny1.test", "--weights", str(tiny_weights_dir),
                 "--images", str(SAMPLE_DIR), "--out", str(tmp_path / "x.csv")])
    assert code == 2 and "similar --build --model tiny1.test" in capsys.readouterr().err
    monkeypatch.setenv("LESIONLIB_DATA", str(tmp_path))
    code = main(["similar", "--build", "--model", "tiny1.test", "--weights",
                 str(tiny_weights_dir)])
    assert code == 2 and "No ham10000 dataset folder" in capsys.readouterr().err
    code = main(["similar", "--model", "nope", "--weights", str(tiny_weights_dir),
                 "--build"])
    assert code == 2 and "Unknown model 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("model_id", SHIPPED)
def test_shipped_index_is_current_compact_and_measured(model_id):
    cards = registry.discover(REPO_ROOT / "weights")
    card = cards.cards[model_id]
    path = retrieval.index_path(card)
    assert path.is_file(), f"run `{retrieval.build_command(model_id)}`"
    assert path.stat().st_size < 5_000_000
    index, embedder = retrieval.load_index(card, cards)  # raises when stale
    assert embedder.id == model_id
    assert len(index.training) == 6998 and index.samples is not None
    assert 0.0 < index.metrics["precision_at_k"] <= 1.0
    assert 0.0 < index.metrics["majority_vote_balanced_accuracy"] <= 1.0
