"""The teaching quiz's stored reveals: the same answer, findings, heatmap and neighbours as a
live pass, refused when stale or tampered with, and read by the quiz page instead of computing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest  # noqa: F401  (the page tests below use AppTest)

from conftest import SAMPLE_DIR, build_tiny_weights
from lesionlib import explain, quality, quiz_reveals, registry, retrieval
from lesionlib.cli import main
from lesionlib.integrity import IntegrityError
from page_fixtures import add_fake_predictions
from test_retrieval import build_sample_index

MODEL = "ensemble.ham10000"


def sample_images() -> list[tuple[str, bytes]]:
    labels = pd.read_csv(SAMPLE_DIR / "labels.csv")
    return [(row.image_id, (SAMPLE_DIR / row.file).read_bytes()) for row in labels.itertuples()]


def build_store(weights: Path, model_id: str = MODEL) -> quiz_reveals.QuizReveals:
    from lesionlib.integrity import seal

    catalogue = registry.discover(weights)
    classifier = registry.load_classifier(model_id, catalogue=catalogue)
    images = sample_images()
    store = quiz_reveals.build(classifier, catalogue, images + images[:2], k=5, batch_size=8)
    store.save(quiz_reveals.KIND.path(catalogue.cards[model_id]))
    seal(catalogue.cards[model_id].folder)
    return store


@pytest.fixture(scope="module")
def store_weights(tmp_path_factory) -> Path:
    """Tiny models with fake stored predictions, tiny0's similar-case index and the
    ensemble's stored quiz reveals over the bundled samples."""
    folder = build_tiny_weights(tmp_path_factory.mktemp("quiz_weights"))
    add_fake_predictions(folder)
    build_sample_index(folder)
    build_store(folder)
    return folder


def test_a_stored_reveal_is_what_a_live_pass_gives(store_weights):
    from lesionlib.imaging import load_image

    catalogue = registry.discover(store_weights)
    card = catalogue.cards[MODEL]
    store = quiz_reveals.load(card, catalogue)
    images = sample_images()
    assert len(store) == len(images)  # the repeated images are stored once
    classifier = registry.load_classifier(MODEL, catalogue=catalogue)
    index, embedder = retrieval.load_index(card, catalogue)
    retriever = retrieval.Retriever(index, registry.load_single(embedder))
    explainers = [explain.Explainer(member) for member in classifier.members]
    for image_id, data in images[:4]:
        import hashlib

        reveal = store.reveal(hashlib.sha256(data).hexdigest(), index)
        image = load_image(data, name=f"{image_id}.jpg")
        scores = classifier.score([image])
        np.testing.assert_allclose(reveal.probabilities, scores.probabilities[0], atol=1e-5)
        assert reveal.heatmap_class == int(np.argmax(scores.probabilities[0]))
        report = quality.QualityChecker(classifier).assess([image])[0]
        assert reveal.findings == tuple((f.code, f.message) for f in report.findings)
        live_map = explain.ensemble_map(explainers, image, reveal.heatmap_class)
        assert reveal.heatmap.shape == live_map.shape
        assert np.abs(reveal.heatmap - live_map).mean() < 0.03  # 56 px storage, then scaled
        live = retriever.similar([image], 5, "training", [{image_id}])[0]
        stored = reveal.neighbours["training"]
        assert list(stored["image_id"]) == list(live["image_id"])
        assert image_id not in set(stored["image_id"])  # the case itself is never its neighbour
        np.testing.assert_allclose(stored["similarity"], live["similarity"], atol=1e-5)
        prediction, members, quality_report = quiz_reveals.case_outputs(
            reveal, card, [catalogue.cards[member] for member in card.members])
        assert prediction.model_id == MODEL and prediction.model_version == card.version
        assert len(members) == 2 and quality_report.findings == report.findings
    assert store.reveal("0" * 64, index) is None  # an image it does not hold


def test_a_stale_missing_or_tampered_store_is_refused(store_weights, tmp_path):
    import shutil

    weights = tmp_path / "weights"
    shutil.copytree(store_weights, weights)
    catalogue = registry.discover(weights)
    card = catalogue.cards[MODEL]
    path = quiz_reveals.KIND.path(card)
    # a member re-evaluated (its card changed): the store's answers may no longer hold
    member_card = Path(catalogue.cards["tiny0.test"].folder) / "card.json"
    data = json.loads(member_card.read_text())
    data["temperature"] = 2.5
    member_card.write_text(json.dumps(data))
    from lesionlib.integrity import seal

    seal(member_card.parent)
    with pytest.raises(quiz_reveals.StaleRevealsError, match="quiz-reveals --model"):
        quiz_reveals.load(registry.discover(weights).cards[MODEL], registry.discover(weights))
    # a store changed after sealing
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(IntegrityError):
        quiz_reveals.load(card, catalogue)
    path.unlink()
    with pytest.raises(quiz_reveals.RevealsMissingError, match="quiz-reveals --model"):
        quiz_reveals.load(card, catalogue)


def test_the_command_builds_and_seals_the_samples_store(tiny_weights_dir, tmp_path,
                                                        monkeypatch, capsys):
    import shutil

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    empty = tmp_path / "no_data"
    empty.mkdir()
    monkeypatch.setenv("LESIONLIB_DATA", str(empty))  # a fresh install: the samples only
    assert main(["quiz-reveals", "--model", "tiny1.test", "--weights", str(weights)]) == 0
    output = capsys.readouterr().out
    assert "21 bundled samples" in output and "No similar cases stored" in output
    catalogue = registry.discover(weights)
    store = quiz_reveals.load(catalogue.cards["tiny1.test"], catalogue)
    assert len(store) == 21 and store.member_probabilities.shape[1] == 0
    assert store.neighbour_positions == {}  # tiny1 has no similar-case index
    assert main(["quiz-reveals", "--model", "nope", "--weights", str(weights)]) == 2


# ----------------------------------------------------------------------------- the page

@pytest.fixture(scope="module")
def page_weights(store_weights) -> Path:
    return store_weights


from test_pages import app_env, no_dataset  # noqa: E402,F401  (on page_weights above)
from test_pages import assert_ok, open_page, texts  # noqa: E402
from test_teaching_page import commit, start_round  # noqa: E402


@pytest.mark.slow
def test_the_quiz_reveals_from_the_store_without_model_work(no_dataset, monkeypatch):
    """A class answering at once queued behind each other's model passes (9.5 s median commit
    with 20 sessions): with a stored reveal a commit runs no model at all."""
    from app import prefetch
    from lesionlib import registry as models

    def refuse(*args, **kwargs):
        raise AssertionError("model work at commit despite a stored reveal")

    monkeypatch.setattr(models.EnsembleModel, "score", refuse)
    monkeypatch.setattr(models.SingleModel, "score", refuse)
    monkeypatch.setattr(explain.Explainer, "compute_maps", refuse)
    monkeypatch.setattr(retrieval.Retriever, "embed", refuse)
    monkeypatch.setattr(prefetch, "prefetch_reveal", refuse)
    app = open_page("teaching")
    start_round(app, 2)
    for position in range(2):
        commit(app, "bcc")
        content = texts(app)
        assert "Reference diagnosis" in content and "The model's answer" in content
        assert "calibrated confidence" in content and "Intended use" in content
        assert any("Grad-CAM for" in str(caption) for image in app.image
                   for caption in image.captions)
        assert "features of **tiny0.test**" in content  # similar cases, from the store
        label = "Next case" if position == 0 else "See my results"
        next(button for button in app.button if button.label == label).click()
        app.run()
        assert_ok(app)
    assert "Your balanced accuracy" in texts(app)
