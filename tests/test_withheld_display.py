"""Pages on images that fail the quality gate: the reason first, no diagnosis until asked for,
then marked unreliable (case review, compare, error browser), through Streamlit's AppTest.

The tiny models get real gates fitted on synthetic skin-like images (as ``fit-gate`` does on
HAM10000), so a blank or colourless upload fails the image checks for real.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import build_tiny_weights, needs_dataset
from page_fixtures import add_fake_predictions, use_page_environment
from test_pages import assert_ok, open_page, select_error_row, texts
from test_quality import _fit_tiny_gates, _skin_like

from lesionlib.integrity import seal
from lesionlib.quality import GATE_FILE, QualityGate

pytestmark = pytest.mark.slow
REVEAL = "Show the model's output anyway (unreliable)"


@pytest.fixture(scope="module")
def gated_weights(tmp_path_factory) -> Path:
    folder = build_tiny_weights(tmp_path_factory.mktemp("gated_weights"))
    add_fake_predictions(folder)
    _fit_tiny_gates(folder, _skin_like(2, 40))
    return folder


@pytest.fixture(scope="module")
def strict_weights(gated_weights, tmp_path_factory) -> Path:
    """The same gates with a distance threshold every image exceeds: all images fail."""
    folder = tmp_path_factory.mktemp("strict") / "weights"
    shutil.copytree(gated_weights, folder)
    for path in folder.glob(f"*/{GATE_FILE}"):
        dataclasses.replace(QualityGate.load(path), distance_threshold=-1.0).save(path)
        seal(path.parent)
    return folder


@pytest.fixture
def gated_env(gated_weights, tmp_path, monkeypatch):
    use_page_environment(monkeypatch, gated_weights, tmp_path)
    return gated_weights


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(app, key: str, image: np.ndarray, name: str = "upload.png"):
    app.radio(key=f"{key}_source").set_value("Upload").run()
    app.file_uploader[0].set_value((name, png(image), "image/png")).run()
    assert_ok(app)
    return app


def ordered_texts(app) -> list[str]:
    """Every element's text in page order (metrics as 'label: value')."""
    parts = []
    for node in app.main:
        if getattr(node, "type", None) == "metric":
            parts.append(f"{node.label}: {node.value}")
        elif hasattr(node, "value") and isinstance(getattr(node, "value", None), str):
            parts.append(node.value)
    return parts


def first_index(parts: list[str], needle: str) -> int:
    return next(index for index, part in enumerate(parts) if needle in part)


def has_feedback_form(app) -> bool:
    return any(radio.key and radio.key.endswith("_verdict") for radio in app.radio)


def test_case_review_withholds_a_blank_upload_until_asked(gated_env):
    app = upload(open_page("case_review"), "case_review", np.full((150, 200, 3), 128, np.uint8))
    content = texts(app)
    assert "Diagnosis withheld" in content and "almost uniform (blank?)" in content
    assert "Top diagnosis" not in content and "Melanoma probability" not in content
    assert not app.get("plotly_chart") and not has_feedback_form(app)
    assert len(app.image) == 1  # the case itself, no heatmap
    app.checkbox[0].check().run()
    assert_ok(app)
    parts = ordered_texts(app)
    assert first_index(parts, "Diagnosis withheld") < first_index(parts, "UNRELIABLE")
    assert first_index(parts, "UNRELIABLE") < first_index(parts, "Top diagnosis (UNRELIABLE)")
    assert any("UNRELIABLE — Melanoma probability" in part for part in parts)
    assert has_feedback_form(app) and len(app.image) >= 3  # the heatmap follows the output


def test_colourless_upload_is_withheld_with_its_reason(gated_env):
    lesion = _skin_like(2, 40)[35]
    gray = np.repeat(cv2.cvtColor(lesion, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    app = upload(open_page("case_review"), "case_review", gray)
    content = texts(app)
    assert "Diagnosis withheld" in content and "no colour" in content
    assert "Top diagnosis" not in content


def passing_lesion(weights: Path) -> np.ndarray:
    """A validation image of the tiny gates that the ensemble's gate lets through."""
    from lesionlib import registry
    from lesionlib.quality import QualityChecker

    checker = QualityChecker(registry.load_classifier("ensemble.ham10000", weights))
    lesions = _skin_like(2, 40)[30:]
    reports = checker.assess(lesions)
    return next(lesion for lesion, report in zip(lesions, reports) if not report.withheld)


def test_passing_image_shows_the_output_with_the_clinic_caveat(gated_env):
    app = upload(open_page("case_review"), "case_review", passing_lesion(gated_env))
    content = texts(app)
    assert "Diagnosis withheld" not in content and not app.checkbox
    assert "Top diagnosis: " in content and "UNRELIABLE" not in content
    assert "does not mean benign" in content and "ISIC 2017" in content
    assert has_feedback_form(app)


def test_compare_withholds_every_failing_model(gated_env):
    app = upload(open_page("compare"), "compare", np.full((150, 200, 3), 128, np.uint8))
    content = texts(app)
    assert "Withheld for 3 of 3 models" in content
    assert "Top diagnosis" not in content and "agree" not in content.lower().replace(
        "disagree", "")
    app.checkbox[0].check().run()
    assert_ok(app)
    parts = ordered_texts(app)
    assert first_index(parts, "Withheld for 3") < first_index(parts, "Top diagnosis (UNRELIABLE)")
    assert "includes UNRELIABLE outputs" in texts(app)


@needs_dataset
def test_error_browser_withholds_a_failing_image(strict_weights, gated_env, monkeypatch):
    monkeypatch.setenv("LESIONLIB_WEIGHTS", str(strict_weights))
    app = select_error_row(open_page("audit"), 0)
    assert_ok(app)
    content = texts(app)
    assert "Diagnosis withheld" in content and "lie far from those of the images it was trained on" in content
    assert "Every model's stored output" not in content and not has_feedback_form(app)
    app.checkbox[0].check().run()
    assert_ok(app)
    parts = ordered_texts(app)
    assert first_index(parts, "Diagnosis withheld") < first_index(parts, "UNRELIABLE")
    assert "Every model's stored output" in texts(app) and has_feedback_form(app)
