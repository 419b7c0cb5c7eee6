"""The Teaching quiz page and the similar-cases panel through AppTest, on the tiny weights."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import build_tiny_weights
from page_fixtures import add_fake_predictions
from test_pages import DASHBOARD, TIMEOUT_S, assert_ok, open_page, texts
from test_retrieval import build_sample_index

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def page_weights(tmp_path_factory) -> Path:
    """Tiny models with fake stored predictions and a similar-case index for tiny0."""
    folder = build_tiny_weights(tmp_path_factory.mktemp("teaching_weights"))
    add_fake_predictions(folder)
    build_sample_index(folder)
    return folder


# the fixtures of test_pages, on these weights
from test_pages import app_env, no_dataset, sign_in_on  # noqa: E402,F401


def start_round(app: AppTest, length: int) -> None:
    app.number_input(key="teaching_length").set_value(length)
    next(button for button in app.button if button.label == "Start the round").click()
    app.run()
    assert_ok(app)


def commit(app: AppTest, answer: str | None) -> None:
    if answer is not None:
        next(radio for radio in app.radio
             if radio.key and radio.key.startswith("teaching_answer_")).set_value(answer)
    next(button for button in app.button if button.label == "Commit my answer").click()
    app.run()
    assert_ok(app)


def test_a_round_reveals_only_after_commit_and_scores(no_dataset):
    app = open_page("teaching")
    assert_ok(app)
    assert "bundled sample images" in texts(app)
    start_round(app, 2)
    content = texts(app)
    assert "Case 1 of 2" in content and "Reference diagnosis" not in content
    assert "diagnosis hidden" in "\n".join(str(c) for image in app.image for c in image.captions)
    assert not app.get("download_button")
    commit(app, None)
    assert any("Choose one of the seven" in warning.value for warning in app.warning)
    assert "Reference diagnosis" not in texts(app)
    for position in range(2):
        commit(app, "mel")
        content = texts(app)
        assert "Reference diagnosis" in content and "confirmed by" in content
        assert "ensemble.ham10000" in content and "Intended use" in content
        assert "features of **tiny0.test**" in content  # the ensemble's member, named
        assert "The HAM10000 images are not here" in content
        label = "Next case" if position == 0 else "See my results"
        next(button for button in app.button if button.label == label).click()
        app.run()
        assert_ok(app)
    content = texts(app)
    assert "Your balanced accuracy" in content and "balanced accuracy" in content
    assert len(app.get("plotly_chart")) == 2  # student's and model's confusion matrices
    download = app.get("download_button")
    assert len(download) == 1
    next(button for button in app.button if button.label == "New round").click()
    app.run()
    assert_ok(app)
    assert any(button.label == "Start the round" for button in app.button)


def test_an_impossible_choice_is_a_message(no_dataset):
    app = open_page("teaching")
    app.multiselect(key="teaching_classes").set_value(["vasc"])
    app.selectbox(key="teaching_difficulty").set_value("models_disagree")
    app.selectbox(key="teaching_model_choice").set_value("tiny1.test")
    app.run()
    start_round(app, 5)
    vasc = texts(app)
    assert "No case here matches" in vasc or "Case 1 of" in vasc


def test_case_review_shows_similar_cases_or_why_not(no_dataset):
    app = open_page("case_review")
    assert_ok(app)
    content = texts(app)
    assert "Similar training cases" in content and "similarity" in content
    app.selectbox(key="case_review_model").set_value("tiny1.test").run()
    assert_ok(app)
    # the message is Markdown-escaped text (lesionlib.plain_text): compare without escapes
    assert "similar --build --model tiny1.test" in texts(app).replace("\\", "")


def test_signed_out_user_sees_no_quiz(sign_in_on):
    app = AppTest.from_file(DASHBOARD, default_timeout=TIMEOUT_S)
    app.run()
    app.switch_page("pages/teaching.py")
    app.run()
    assert_ok(app)
    assert not app.title and not app.image and not app.get("download_button")


def test_explorer_gallery_hides_diagnoses_until_revealed_and_opens_a_case(no_dataset):
    app = open_page("explorer")
    assert_ok(app)
    gallery = [image for image in app.image
               if any("age" in str(caption) for caption in image.captions)]
    assert gallery, "the gallery shows the bundled samples"
    hidden = "\n".join(str(caption) for image in gallery for caption in image.captions)
    assert not any(f"{name} ·" in hidden for name in ("mel", "nv", "bcc", "bkl"))
    examples = "\n".join(str(c) for image in app.image for c in image.captions)
    assert "mel · ISIC_" in examples  # each class description has example images
    app.toggle(key="explorer_reveal").set_value(True).run()
    assert_ok(app)
    revealed = "\n".join(str(c) for image in app.image for c in image.captions)
    assert any(f"{name} · " in revealed and "age" in revealed for name in ("mel", "nv"))
    app.toggle(key="explorer_reveal").set_value(False).run()
    opener = next(button for button in app.button
                  if button.key and button.key.startswith("explorer_open_"))
    image_id = opener.key.removeprefix("explorer_open_")
    opener.click().run()
    assert_ok(app)
    # before the reveal neither the diagnosis nor the id (which can be looked up) is shown
    assert "id hidden until the reveal" in texts(app) and "confirmed by" not in texts(app)
    assert image_id not in texts(app)
    app.toggle(key=f"explorer_reveal_{image_id}").set_value(True).run()
    assert "confirmed by" in texts(app) and f"Case {image_id}" in texts(app)
    links = [link for link in app.get("page_link") if image_id in str(link.proto)]
    assert links and "case_review" in str(links[0].proto)
    app.button(key="explorer_close").click().run()
    assert f"Case {image_id}" not in texts(app)


def test_models_page_shows_retrieval_beside_the_classifier(no_dataset):
    app = open_page("models")
    assert_ok(app)
    tables = [frame.value for frame in app.dataframe
              if "on the HAM10000 test split" in frame.value.columns]
    assert len(tables) == 2  # tiny0 and the ensemble (through tiny0)
    rows = "\n".join(tables[0]["on the HAM10000 test split"])
    assert "majority-vote balanced accuracy" in rows and "precision@5" in rows
    assert "No usable similar-case index" in texts(app)  # tiny1 has none


def test_the_case_pool_is_built_once_not_on_every_click(no_dataset, monkeypatch):
    """A class of students made every "Commit my answer" rebuild the pool (~60% of server
    time, 17-43 s per commit with 5 students); it is built once per model version."""
    from lesionlib import teaching

    builds = []
    real = teaching.case_pool
    monkeypatch.setattr(teaching, "case_pool",
                        lambda *args, **kwargs: builds.append(1) or real(*args, **kwargs))
    app = open_page("teaching")
    start_round(app, 2)
    commit(app, "mel")
    next(button for button in app.button if button.label == "Next case").click()
    app.run()
    commit(app, "nv")
    assert len(builds) <= 1, f"the pool was rebuilt {len(builds)} times in one round"
