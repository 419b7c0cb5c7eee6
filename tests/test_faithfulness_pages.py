"""The heatmap-faithfulness figures and the edge warning in the dashboard (AppTest).

The report is a synthetic one (``test_faithfulness.synthetic_report``) written for the tiny
weights' real ids and weights, and pointed to by ``LESIONLIB_HEATMAP_REPORT``.
"""

from __future__ import annotations

import json

import pytest

from lesionlib import faithfulness, registry
from test_faithfulness import synthetic_report
from test_pages import app_env, no_dataset, page_weights  # noqa: F401 - fixtures
from test_pages import assert_ok, open_page, texts

pytestmark = pytest.mark.slow

EDGE_WARNING = "the heatmap lies mostly at the image edge, not on the lesion"


def write_report(weights_folder, path, threshold: float, stale: bool = False) -> None:
    """A report covering every tiny model (each "looking off the lesion")."""
    catalogue = registry.discover(weights_folder)
    report = synthetic_report(threshold=threshold)
    template = report["models"].pop("tiny0.test")
    for model_id, card in catalogue.cards.items():
        weights = faithfulness.weights_identity(card, catalogue.cards)
        if stale:
            weights = {member: "0" * 64 for member in weights}
        report["models"][model_id] = {**template, "version": card.version, "weights": weights}
    path.write_text(json.dumps(report))


@pytest.fixture
def report_env(no_dataset, page_weights, tmp_path, monkeypatch):
    """Returns ``write(threshold, stale=False)``, which installs a report for the pages."""
    path = tmp_path / "heatmap_faithfulness.json"
    monkeypatch.setenv(faithfulness.REPORT_ENV, str(path))

    def write(threshold: float, stale: bool = False) -> None:
        write_report(page_weights, path, threshold, stale)
    return write


def test_case_review_warns_when_the_heatmap_lies_at_the_edge(report_env):
    report_env(threshold=0.0)  # every map reaches it
    app = open_page("case_review")
    assert_ok(app)
    warnings = "\n".join(str(warning.value) for warning in app.warning)
    assert EDGE_WARNING in warnings
    assert "mostly look off the lesion" in warnings  # the model-level figure, from PH2


def test_case_review_states_the_edge_check_when_it_does_not_fire(report_env):
    report_env(threshold=1.01)  # no map reaches it
    app = open_page("case_review")
    assert_ok(app)
    assert EDGE_WARNING not in "\n".join(str(warning.value) for warning in app.warning)
    assert "Heatmap edge check:" in texts(app)
    assert "the warning fires from 101%" in texts(app)


def test_without_a_report_the_pages_say_what_to_run(no_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv(faithfulness.REPORT_ENV, str(tmp_path / "missing.json"))
    app = open_page("case_review")
    assert_ok(app)
    assert "Heatmap edge check unavailable" in texts(app)
    assert faithfulness.REPORT_COMMAND in texts(app)
    models = open_page("models")
    assert_ok(models)
    assert "No heatmap report yet" in texts(models)


def test_models_page_shows_the_ph2_figures(report_env):
    report_env(threshold=0.5)
    app = open_page("models")
    assert_ok(app)
    content = texts(app)
    assert "Is the heatmap on the lesion?" in content
    assert "This model's Grad-CAM maps mostly look off the lesion" in content
    columns = [list(frame.value.columns) for frame in app.dataframe]
    assert ["model", "Grad-CAM energy in lesion", "lesion area", "maps off the lesion",
            "deletion AUC map / random", "figures"] in columns
    overview = next(frame.value for frame in app.dataframe
                    if "Grad-CAM energy in lesion" in frame.value.columns)
    assert set(overview["model"]) == {"ensemble.ham10000", "tiny0.test", "tiny1.test"}
    assert list(overview["Grad-CAM energy in lesion"].unique()) == ["30%"]
    assert any("energy in lesion" in columns_ for columns_ in columns)
    assert len(app.get("plotly_chart")) >= 1  # the deletion curves


def test_models_page_says_when_the_figures_are_stale(report_env):
    report_env(threshold=0.5, stale=True)
    app = open_page("models")
    assert_ok(app)
    assert "not on the weights installed now" in texts(app)


def test_audit_page_has_a_heatmap_tab(report_env):
    report_env(threshold=0.5)
    app = open_page("audit")
    assert_ok(app)
    content = texts(app)
    assert "PH2 images whose map is least on the lesion" in content
    assert "Edge warning (fires from 50%" in content
    app.selectbox(key="audit_faithfulness_ensemble.ham10000_method").set_value("Grad-CAM").run()
    assert_ok(app)


def test_models_page_says_when_deletion_is_no_faster_than_random(report_env, tmp_path):
    report_env(threshold=0.5)
    app = open_page("models")
    assert not any(faithfulness.DELETION_CAVEAT in info.value for info in app.info)
    path = tmp_path / "heatmap_faithfulness.json"
    report = json.loads(path.read_text())
    for entry in report["models"].values():
        deletion = entry["methods"]["Grad-CAM"]["deletion"]
        deletion["heatmap_auc"], deletion["random_auc"] = 0.6, 0.4  # slower than random
    path.write_text(json.dumps(report))
    app = open_page("models")
    assert_ok(app)
    assert any(faithfulness.DELETION_CAVEAT in info.value for info in app.info)
