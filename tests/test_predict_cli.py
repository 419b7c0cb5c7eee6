"""``python -m lesionlib predict``: one row per input, unreadable files reported, not fatal."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT, SAMPLE_DIR
from lesionlib.classes import CLASS_NAMES
from lesionlib.cli import main

SHIPPED = REPO_ROOT / "weights" / "ensemble.ham10000" / "card.json"


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted(SAMPLE_DIR.glob("*.jpg"))[:4]:
        shutil.copy(path, folder)
    (folder / "notes.jpg").write_text("this is not an image")
    (folder / "empty.png").write_bytes(b"")
    truncated = (SAMPLE_DIR / sorted(p.name for p in SAMPLE_DIR.glob("*.jpg"))[0]).read_bytes()
    (folder / "truncated.jpg").write_bytes(truncated[: len(truncated) // 3])
    return folder


def _check_output(out: Path, expected_rows: int) -> pd.DataFrame:
    frame = pd.read_csv(out, keep_default_na=False)
    assert len(frame) == expected_rows
    assert list(frame.columns[:9]) == ["file", *CLASS_NAMES, "prediction"]
    scored = frame[frame["error"] == ""]
    np.testing.assert_allclose(scored[list(CLASS_NAMES)].astype(float).sum(axis=1), 1.0,
                               atol=1e-4)
    assert set(scored["prediction"]) <= set(CLASS_NAMES)
    return frame


def test_predict_folder_with_broken_files(image_folder, tmp_path, tiny_weights_dir):
    out = tmp_path / "preds.csv"
    assert main(["predict", "--weights", str(tiny_weights_dir), "--images", str(image_folder),
                 "--out", str(out), "--quiet"]) == 0
    frame = _check_output(out, 7).set_index("file")
    assert "empty" in frame.loc["empty.png", "error"]
    assert "not an image file we can read" in frame.loc["notes.jpg", "error"]
    assert frame.loc["truncated.jpg", "error"] != ""
    assert (frame["model_id"] == "ensemble.ham10000").all()


def test_predict_csv_with_relative_paths_and_model_choice(tmp_path, tiny_weights_dir):
    pd.DataFrame({"file": ["sample_images/" + p.name for p in sorted(SAMPLE_DIR.glob("*.jpg"))[:3]]
                  + ["sample_images/missing.jpg"]}).to_csv(REPO_ROOT / ".predict_test.csv",
                                                           index=False)
    out = tmp_path / "preds.csv"
    try:
        assert main(["predict", "--weights", str(tiny_weights_dir), "--model", "tiny1.test",
                     "--images", str(REPO_ROOT / ".predict_test.csv"), "--out", str(out),
                     "--quiet"]) == 0
    finally:
        (REPO_ROOT / ".predict_test.csv").unlink()
    frame = _check_output(out, 4)
    assert frame["file"].iloc[0].startswith("sample_images/")
    assert "not found" in frame["error"].iloc[3]
    assert (frame["model_id"] == "tiny1.test").all()


def test_unknown_model_is_a_clear_error(tmp_path, tiny_weights_dir, capsys):
    code = main(["predict", "--weights", str(tiny_weights_dir), "--model", "tiny9.test",
                 "--images", str(SAMPLE_DIR), "--out", str(tmp_path / "x.csv"), "--quiet"])
    assert code == 2 and "Unknown model" in capsys.readouterr().err


@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped models not in weights/")
def test_shipped_ensemble_scores_the_sample_images(image_folder, tmp_path):
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", "ensemble", "--images", str(image_folder),
                 "--out", str(out), "--quiet"]) == 0
    frame = _check_output(out, 7)
    assert (frame["model_id"] == "ensemble.ham10000").all()
    assert (frame["error"] != "").sum() == 3
