"""Stress test: each perturbation changes the image as described, and the report's drops are
computed against the unchanged images of the same run (tiny models, sample images)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SAMPLE_DIR
from lesionlib import robustness
from lesionlib.cli import main
from lesionlib.imaging import load_image

IMAGE = load_image(SAMPLE_DIR / "ISIC_0024904.jpg")  # 200x150, HAM10000's own framing


def test_each_perturbation_changes_the_image_as_named():
    height, width = IMAGE.shape[:2]
    assert robustness.centre_crop_square(IMAGE).shape[:2] == (height, height)
    padded = robustness.pad_square(IMAGE)
    assert padded.shape[:2] == (width, width) and padded[0].max() == 0  # black bars
    assert robustness.rotate(IMAGE, 90).shape[:2] == (width, height)
    assert robustness.rotate(IMAGE, 45).shape == IMAGE.shape
    assert robustness.zoom(IMAGE, 1.25).shape == IMAGE.shape
    assert robustness.zoom(IMAGE, 0.8).shape == IMAGE.shape
    assert robustness.half_resolution(IMAGE).shape[:2] == (height // 2, width // 2)
    assert robustness.brightness(IMAGE, 1.2).mean() > IMAGE.mean()
    cast = robustness.colour_cast(IMAGE).astype(float)
    assert cast[..., 0].mean() > IMAGE[..., 0].mean() > cast[..., 2].mean() - 50
    assert np.abs(robustness.blur(IMAGE).astype(int) - IMAGE).mean() > 0
    for name, change in robustness.PERTURBATIONS.items():
        changed = change(IMAGE)
        assert changed.dtype == np.uint8 and changed.ndim == 3, name
        assert not np.array_equal(changed, IMAGE), f"{name} left the image unchanged"


def test_drops_are_against_the_unchanged_images_of_the_same_run():
    """A 'model' that reads the mean brightness: darkening changes its answers, a rotation of
    a uniform image cannot."""
    rng = np.random.default_rng(0)
    images = [np.full((30, 40, 3), value, np.uint8) for value in rng.integers(20, 230, 40)]
    labels = np.array([4 if image.mean() > 120 else 5 for image in images])

    def predict(batch):
        out = np.zeros((len(batch), 7))
        for row, image in enumerate(batch):
            out[row, 4 if image.mean() > 120 else 5] = 0.9
            out[row, 4 if image.mean() <= 120 else 5] = 0.1
        return out

    frame = robustness.stress_test(predict, images, labels, 0.5, perturbations={
        "rotation 90°": robustness.PERTURBATIONS["rotation 90°"],
        "brightness −20%": robustness.PERTURBATIONS["brightness −20%"]})
    rows = frame.set_index("condition")
    assert rows.loc["unchanged", "balanced_accuracy"] == pytest.approx(1.0)  # all right
    assert rows.loc["rotation 90°", "ba_drop"] == pytest.approx(0.0)
    assert rows.loc["brightness −20%", "ba_drop"] > 0
    assert bool(rows.loc["rotation 90°", "within_target"])


def test_the_command_writes_the_report(tiny_weights_dir, tmp_path, capsys):
    from pathlib import Path

    data = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ham10000"
    if not (data / "labels.csv").is_file():
        pytest.skip("needs ../shared/data/ham10000")
    assert main(["stress-test", "--model", "tiny0.test", "--weights", str(tiny_weights_dir),
                 "--report-dir", str(tmp_path), "--limit", "8"]) == 0
    report = robustness.load_report(tmp_path)
    rows = report["tiny0.test"]["rows"]
    assert [row["condition"] for row in rows] == ["unchanged", *robustness.PERTURBATIONS]
    text = (tmp_path / robustness.REPORT_MARKDOWN).read_text()
    assert "stress-test --model tiny0.test" in text and "Largest drop" in text
