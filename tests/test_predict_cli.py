"""``python -m lesionlib predict``: one row per input, nothing lost, checked before scoring."""

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import lesionlib.inference
from conftest import REPO_ROOT, SAMPLE_DIR
from lesionlib import registry
from lesionlib.classes import CLASS_NAMES
from lesionlib.cli import main
from lesionlib.inference import OUTPUT_COLUMNS, WITHHELD_PREFIX, predict_files
from lesionlib.integrity import seal
from lesionlib.quality import GATE_FILE, Finding, QualityGate, QualityReport

SHIPPED = REPO_ROOT / "weights" / "ensemble.ham10000" / "card.json"
SAMPLES = sorted(SAMPLE_DIR.glob("*.jpg"))


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for path in SAMPLES[:4]:
        shutil.copy(path, folder)
    (folder / "notes.jpg").write_text("this is not an image")
    (folder / "empty.png").write_bytes(b"")
    truncated = SAMPLES[0].read_bytes()
    (folder / "truncated.jpg").write_bytes(truncated[: len(truncated) // 3])
    return folder


@pytest.fixture
def loads(monkeypatch):
    """Records every file that predict decodes (a file decoded is a file scored)."""
    seen = []
    real = lesionlib.inference.load_image

    def recording(path):
        seen.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(lesionlib.inference, "load_image", recording)
    return seen


def _predict(weights, images, out, *extra) -> int:
    return main(["predict", "--weights", str(weights), "--images", str(images), "--out",
                 str(out), "--quiet", *extra])


def _check_output(out: Path, expected_rows: int) -> pd.DataFrame:
    frame = pd.read_csv(out, keep_default_na=False, dtype={"file": str})
    assert len(frame) == expected_rows
    assert list(frame.columns) == list(OUTPUT_COLUMNS)
    scored = frame[frame["error"] == ""]
    np.testing.assert_allclose(scored[list(CLASS_NAMES)].astype(float).sum(axis=1), 1.0,
                               atol=1e-4)
    assert set(scored["prediction"]) <= set(CLASS_NAMES) | {""}
    return frame


def _one_error_line(capsys, *expected: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for text in expected:
        assert text in err
    return err


def test_predict_folder_gives_every_file_a_row(image_folder, tmp_path, tiny_weights_dir):
    (image_folder / "image.jpg.exe").write_bytes(b"MZ\x90\x00 not an image")
    (image_folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (image_folder / "subfolder").mkdir()
    out = tmp_path / "preds.csv"
    assert _predict(tiny_weights_dir, image_folder, out) == 0
    frame = _check_output(out, 8).set_index("file")
    assert list(frame.index) == sorted(path.name for path in image_folder.iterdir()
                                       if path.is_file() and path.name != ".DS_Store")
    assert "not an image file we can read" in frame.loc["image.jpg.exe", "error"]
    assert "empty" in frame.loc["empty.png", "error"]
    assert "not an image file we can read" in frame.loc["notes.jpg", "error"]
    assert frame.loc["truncated.jpg", "error"] != ""
    assert (frame.loc[SAMPLES[0].name, "prediction"] in CLASS_NAMES)
    assert (frame["model_id"] == "ensemble.ham10000").all()


def test_predict_csv_reports_paths_as_written(tmp_path, tiny_weights_dir):
    listed = tmp_path / "lists" / "cases.csv"
    listed.parent.mkdir()
    shutil.copy(SAMPLES[1], listed.parent / "local.jpg")
    files = [str(SAMPLES[0].resolve()), "local.jpg", "missing.jpg", "",
             os.path.relpath(SAMPLES[2], listed.parent)]
    pd.DataFrame({"file": files, "note": range(5)}).to_csv(listed, index=False)
    out = tmp_path / "preds.csv"
    assert _predict(tiny_weights_dir, listed, out, "--model", "tiny1.test") == 0
    frame = _check_output(out, 5)
    assert list(frame["file"]) == files
    assert list(frame["error"] == "") == [True, True, False, False, True]
    assert "not found" in frame["error"].iloc[2]
    assert "blank 'file' value" in frame["error"].iloc[3]
    assert (frame["model_id"] == "tiny1.test").all()


def _unwritable_out(tmp_path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o500)
        return folder / "preds.csv"
    if not Path("/proc/version").is_file():
        pytest.skip("running as root without /proc: no unwritable folder to test with")
    return Path("/proc/lesionlib-predictions.csv")  # root may write anywhere but here


@pytest.mark.parametrize("case, message", [
    ("missing_folder", "does not exist"),
    ("folder", "is a folder"),
    ("unwritable", "--out"),
    ("images_list", "is the --images list itself"),
    ("not_predictions", "is not a predictions file"),
    ("other_model", "holds predictions of tiny1.test v1.0.0"),
])
def test_bad_output_is_refused_before_scoring(case, message, tmp_path, tiny_weights_dir,
                                               loads, capsys):
    images = tmp_path / "list.csv"
    pd.DataFrame({"file": [str(path) for path in SAMPLES[:2]]}).to_csv(images, index=False)
    out = {"missing_folder": tmp_path / "nowhere" / "preds.csv", "folder": tmp_path,
           "unwritable": _unwritable_out(tmp_path), "images_list": images,
           "not_predictions": tmp_path / "notes.csv", "other_model": tmp_path / "other.csv"}[case]
    if case == "not_predictions":
        out.write_text("patient,comment\n1,follow up\n")
    if case == "other_model":
        assert _predict(tiny_weights_dir, images, out, "--model", "tiny1.test") == 0
        loads.clear()
    before = out.read_bytes() if out.is_file() else None
    capsys.readouterr()
    assert _predict(tiny_weights_dir, images, out, "--model", "tiny0.test") == 2
    _one_error_line(capsys, message)
    assert loads == []  # nothing was scored
    assert (out.read_bytes() if out.is_file() else None) == before


def test_empty_folder_is_a_clear_error(tmp_path, tiny_weights_dir, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_bytes(b"\x00")
    assert _predict(tiny_weights_dir, tmp_path / "empty", tmp_path / "out.csv") == 2
    _one_error_line(capsys, "names no file")
    assert not (tmp_path / "out.csv").exists()


def test_interrupted_run_keeps_its_rows_and_resumes(image_folder, tmp_path, tiny_weights_dir,
                                                    monkeypatch, capsys):
    out = tmp_path / "preds.csv"
    calls = []
    real = lesionlib.inference.load_image

    def interrupted_at_fifth_image(path):
        calls.append(Path(path).name)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(lesionlib.inference, "load_image", interrupted_at_fifth_image)
    assert _predict(tiny_weights_dir, image_folder, out, "--batch-size", "2") == 130
    assert "keeps the 4 rows" in capsys.readouterr().err
    kept = _check_output(out, 4)
    assert list(kept["file"]) == [path.name for path in SAMPLES[:4]]
    kept_text = out.read_text()

    calls.clear()
    monkeypatch.setattr(lesionlib.inference, "load_image", lambda path: calls.append(
        Path(path).name) or real(path))
    assert _predict(tiny_weights_dir, image_folder, out, "--batch-size", "2") == 0
    assert "already has rows for 4 of the 7 inputs (skipped)" in capsys.readouterr().err
    assert calls == ["empty.png", "notes.jpg", "truncated.jpg"]
    frame = _check_output(out, 7)
    assert frame["file"].is_unique
    assert out.read_text().startswith(kept_text)


def test_gated_image_keeps_probabilities_but_no_diagnosis(tmp_path, tiny_weights_dir):
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    card = registry.discover(weights).cards["tiny0.test"]
    features = registry.load_single(card).keras_model.get_layer("avg_pool").output.shape[-1]
    QualityGate("avg_pool", np.zeros(features), np.zeros((features, 1)), 1e9, min_gray_std=5.0,
                min_sharpness=0.0, min_brightness=10.0, max_brightness=250.0
                ).save(card.folder / GATE_FILE)
    seal(card.folder)  # as `fit-gate` does
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(SAMPLES[0], images)
    Image.new("RGB", (200, 150), (128, 128, 128)).save(images / "blank.png")
    out = tmp_path / "preds.csv"
    assert _predict(weights, images, out, "--model", "tiny0.test") == 0
    frame = _check_output(out, 2).set_index("file")
    blank = frame.loc["blank.png"]
    assert blank["prediction"] == "" and blank["melanoma_flag"] == ""
    assert blank["warning"].startswith(WITHHELD_PREFIX) and "blank" in blank["warning"]
    assert float(blank[list(CLASS_NAMES)].astype(float).sum()) == pytest.approx(1, abs=1e-4)
    assert frame.loc[SAMPLES[0].name, "prediction"] in CLASS_NAMES


def test_predict_files_blanks_only_withheld_rows(tiny_weights_dir):
    classifier = registry.load_classifier("tiny0.test", tiny_weights_dir)

    def reports(images, probabilities, member_probabilities):
        assert len(images) == len(probabilities) == 3
        return [QualityReport((Finding("blurred", "Blurred."),)),
                QualityReport((Finding("uncertain", "Unsure."),)), QualityReport(())]

    frame = predict_files(classifier, SAMPLES[:3], quality_check=reports)
    assert set(frame["prediction"].iloc[1:]) <= set(CLASS_NAMES)
    assert frame["prediction"].iloc[0] == "" and frame["melanoma_flag"].iloc[0] == ""
    assert list(frame["warning"]) == [WITHHELD_PREFIX + "Blurred.", "Unsure.", ""]
    assert not frame[list(CLASS_NAMES)].isna().any().any()
    assert list(frame["file"]) == [str(path) for path in SAMPLES[:3]]


def test_predict_files_of_nothing_is_an_empty_frame(tiny_weights_dir):
    classifier = registry.load_classifier("tiny0.test", tiny_weights_dir)
    frame = predict_files(classifier, [])
    assert frame.empty and list(frame.columns) == list(OUTPUT_COLUMNS)


def test_unknown_model_is_a_clear_error(tmp_path, tiny_weights_dir, capsys):
    assert _predict(tiny_weights_dir, SAMPLE_DIR, tmp_path / "x.csv", "--model",
                    "tiny9.test") == 2
    _one_error_line(capsys, "Unknown model 'tiny9.test'")


@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped models not in weights/")
def test_shipped_ensemble_scores_the_sample_images(image_folder, tmp_path):
    Image.new("RGB", (200, 150), (128, 128, 128)).save(image_folder / "blank.png")
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", "ensemble", "--images", str(image_folder),
                 "--out", str(out), "--quiet"]) == 0
    frame = _check_output(out, 8)
    assert (frame["model_id"] == "ensemble.ham10000").all()
    assert (frame["error"] != "").sum() == 3
    blank = frame.set_index("file").loc["blank.png"]
    assert blank["prediction"] == "" and blank["warning"].startswith(WITHHELD_PREFIX)


# ----------------------------------------------------------------------------- hostile names

NOT_UTF8 = os.fsdecode(b"img_25\xff.jpg")  # a name Linux allows that is not UTF-8
FORMULAS = ('=HYPERLINK("http---x","click").jpg', "@SUM(1).jpg")
NEWLINE = "two\nlines.jpg"


@pytest.fixture
def hostile_folder(tmp_path):
    """Valid images under hostile names, then more images after them, plus a symlink loop, a
    dangling symlink and a FIFO."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    names = ["a_first.jpg", NOT_UTF8, *FORMULAS, NEWLINE, "z_after_1.jpg", "z_after_2.jpg"]
    for index, name in enumerate(names):
        shutil.copy(SAMPLES[index % len(SAMPLES)], folder / name)
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "dangling.jpg").symlink_to(folder / "missing.jpg")
    os.mkfifo(folder / "pipe.jpg")
    return folder, names


def _rows(out: Path) -> pd.DataFrame:
    return pd.read_csv(out, keep_default_na=False, dtype=str)


def test_every_name_the_file_system_allows_gets_a_row(hostile_folder, tmp_path,
                                                      tiny_weights_dir):
    folder, names = hostile_folder
    out = tmp_path / "out.csv"
    assert _predict(tiny_weights_dir, folder, out, "--batch-size", "2") == 0
    frame = _rows(out)
    assert len(frame) == len(names) + 3
    files = set(frame["file"])
    assert "img_25\\xff.jpg" in files  # escaped, as given
    assert "two\\nlines.jpg" in files  # one name, one line
    assert {"'" + name for name in FORMULAS} <= files  # defused for spreadsheets
    assert not any(name[:1] in "=+-@" for name in frame["file"])
    scored = frame[frame["error"] == ""]
    assert len(scored) == len(names)  # the images after the odd names were scored too
    errors = dict(zip(frame["file"], frame["error"]))
    assert "symbolic link" in errors["loop.jpg"] and "symbolic link" in errors["dangling.jpg"]
    assert "not a regular file" in errors["pipe.jpg"]
    # resumed: nothing is scored twice, nothing is lost
    assert _predict(tiny_weights_dir, folder, out) == 0
    assert len(_rows(out)) == len(names) + 3


def test_a_csv_list_of_hostile_names_is_scored_and_resumed(hostile_folder, tmp_path,
                                                          tiny_weights_dir, loads):
    folder, names = hostile_folder
    listing = folder / "list.csv"  # names relative to the list's folder, as written
    pd.DataFrame({"file": [name for name in names if name != NOT_UTF8]}
                 ).to_csv(listing, index=False)
    out = tmp_path / "out.csv"
    assert _predict(tiny_weights_dir, listing, out) == 0
    assert len(_rows(out)) == len(names) - 1
    assert not any(name[:1] in "=+-@" for name in _rows(out)["file"])
    loads.clear()
    assert _predict(tiny_weights_dir, listing, out) == 0
    assert loads == []  # every row was found again, the newline and formula names included
    assert len(_rows(out)) == len(names) - 1


def test_resume_after_a_kill_inside_a_row_with_a_line_break(hostile_folder, tmp_path,
                                                           tiny_weights_dir, capsys):
    """A kill half-way through writing a row: the half row is dropped and the run resumes."""
    folder, names = hostile_folder
    out = tmp_path / "out.csv"
    assert _predict(tiny_weights_dir, folder, out) == 0
    text = out.read_text()
    row_start = text.index("two\\nlines.jpg")
    out.write_text(text[:row_start + 8])  # cut inside that row
    assert _predict(tiny_weights_dir, folder, out) == 0
    frame = _rows(out)
    assert sorted(frame["file"]) == sorted(set(frame["file"]))
    assert "two\\nlines.jpg" in set(frame["file"])


def test_an_unreadable_predictions_file_is_one_message_and_exit_2(tmp_path, tiny_weights_dir,
                                                                  image_folder, capsys):
    from lesionlib.predictions_csv import HEADER

    out = tmp_path / "out.csv"
    out.write_text(HEADER + '"unterminated,0.1\nmore\n')
    assert _predict(tiny_weights_dir, image_folder, out) == 2
    error = capsys.readouterr().err
    assert "cannot be read back" in error and "Traceback" not in error
