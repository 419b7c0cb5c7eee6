"""The audit page's Embedding map and Label issues tabs through AppTest, on tiny weights.

The tiny models carry fake stored predictions on the bundled samples (``page_fixtures``) and an
embedding map of those samples (``test_embedding_map.build_sample_map``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import build_tiny_weights
from page_fixtures import add_fake_predictions, use_page_environment
from test_embedding_map import build_sample_map
from test_pages import assert_ok, open_page, shown, texts

pytestmark = pytest.mark.slow
CASE = "ISIC_0024904"


@pytest.fixture(scope="module")
def research_weights(tmp_path_factory) -> Path:
    folder = build_tiny_weights(tmp_path_factory.mktemp("research_weights"))
    add_fake_predictions(folder)
    for model_id in ("tiny0.test", "tiny1.test"):
        build_sample_map(folder, model_id)
    return folder


def feedback_forms(app, prefix: str) -> list[str]:
    return [radio.key for radio in app.radio if radio.key.startswith(prefix)]


def test_map_and_label_issues_open_cases(research_weights, tmp_path, monkeypatch):
    use_page_environment(monkeypatch, research_weights, tmp_path)
    app = open_page("audit")
    assert_ok(app)
    content = texts(app)
    assert "Features of **tiny0.test** v1.0.0" in content and "Trustworthiness" in content
    assert "suspects** among 21 labelled images (ham10000_test)" in content
    assert "Suspects by confirmation type" in content
    assert app.selectbox(key="audit_map_case").value is None
    assert not feedback_forms(app, "audit_map_feedback")
    for colour in ("prediction", "correctness", "dataset", "dx_type"):
        app.selectbox(key="audit_map_colour").set_value(colour).run()
        assert_ok(app)
    app.selectbox(key="audit_map_case").set_value(CASE).run()
    assert_ok(app)
    assert feedback_forms(app, f"audit_map_feedback_ensemble.ham10000_{CASE}")
    assert "Export the suspects (CSV)" in [button.label for button in
                                           app.get("download_button")]
    if "audit_label_case" in [selectbox.key for selectbox in app.selectbox]:  # any suspects
        choice = app.selectbox(key="audit_label_case")
        assert choice.value is None and not feedback_forms(app, "audit_label_feedback")
        choice.set_value(choice.options[0]).run()
        assert_ok(app)
        assert feedback_forms(app, "audit_label_feedback_ensemble.ham10000_")
        app.multiselect(key="audit_label_dx_type").set_value(["histo"]).run()
        assert_ok(app)


def test_missing_map_is_a_message(tmp_path, monkeypatch, research_weights):
    weights = tmp_path / "weights"
    shutil.copytree(research_weights, weights)
    for model_id in ("tiny0.test", "tiny1.test"):
        (weights / model_id / "embedding_map.npz").unlink()
        from lesionlib.integrity import seal

        seal(weights / model_id)
    use_page_environment(monkeypatch, weights, tmp_path)
    app = open_page("audit")
    assert_ok(app)
    assert any("embedding-map --model tiny0.test" in shown(warning.value)
               for warning in app.warning)
    assert "suspects** among" in texts(app)  # the other tabs are unaffected


def test_selected_point_is_read_from_the_selection_event():
    from app import audit_panels

    event = {"selection": {"points": [{"curve_number": 2, "point_index": 4,
                                       "customdata": ["ISIC_0024904"]}]}}
    assert audit_panels.selected_image_id(event) == "ISIC_0024904"
    assert audit_panels.selected_image_id({"selection": {"points": []}}) is None
    assert audit_panels.selected_image_id(None) is None
    assert audit_panels.selected_image_id({"selection": {"points": [{"x": 1}]}}) is None


def test_robustness_tab_shows_the_stress_test_or_how_to_run_it(research_weights, tmp_path,
                                                               monkeypatch):
    import numpy as np

    from lesionlib import robustness

    use_page_environment(monkeypatch, research_weights, tmp_path)
    monkeypatch.setattr(robustness, "load_report", lambda folder: {})
    content = texts(open_page("audit"))
    assert "has not been stress-tested" in content
    assert "stress-test --model ensemble.ham10000" in content

    def predict(batch):
        return np.tile([0.1, 0.1, 0.1, 0.1, 0.3, 0.2, 0.1], (len(batch), 1))

    images = [np.full((20, 30, 3), 100, np.uint8)] * 4
    frame = robustness.stress_test(predict, images, np.array([4, 5, 4, 5]), 0.5)
    frame.loc[3, "ba_drop"], frame.loc[3, "within_target"] = 0.2, False
    report = {"ensemble.ham10000": {"version": "1.0.0", "command": "python -m lesionlib "
                                    "stress-test --model ensemble.ham10000", "set": "tiny",
                                    "rows": frame.to_dict("records")}}
    monkeypatch.setattr(robustness, "load_report", lambda folder: report)
    app = open_page("audit")
    assert_ok(app)
    content = texts(app)
    assert f"Beyond the target: {frame.loc[3, 'condition']}" in content
    assert any("image change" in frame.value.columns for frame in app.dataframe)
