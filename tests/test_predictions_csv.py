"""The predictions CSV: resumed only for the same model, half-written rows dropped, never mixed."""

import numpy as np
import pandas as pd
import pytest

from lesionlib.classes import CLASS_NAMES
from lesionlib.inference import OUTPUT_COLUMNS
from lesionlib.predictions_csv import HEADER, OutputFileError, PredictionsFile


def _rows(names, model_id="m.test", version="1.0.0") -> pd.DataFrame:
    probabilities = np.full((len(names), len(CLASS_NAMES)), 1 / len(CLASS_NAMES))
    frame = pd.DataFrame(probabilities, columns=list(CLASS_NAMES))
    frame.insert(0, "file", names)
    return frame.assign(prediction="nv", melanoma_flag=False, warning="", error="",
                        model_id=model_id, model_version=version)[list(OUTPUT_COLUMNS)]


def _write(path, names) -> None:
    with PredictionsFile(path, "m.test", "1.0.0") as out:
        out.append(_rows(names))


def test_rows_are_on_disk_after_each_batch(tmp_path):
    path = tmp_path / "preds.csv"
    with PredictionsFile(path, "m.test", "1.0.0") as out:
        out.append(_rows(["a.jpg", "b.jpg"]))
        on_disk = pd.read_csv(path, keep_default_na=False)  # before the file is closed
        assert list(on_disk["file"]) == ["a.jpg", "b.jpg"]
        assert list(on_disk.columns) == list(OUTPUT_COLUMNS)
    assert out.written == 2


def test_existing_file_of_the_same_model_is_resumed(tmp_path):
    path = tmp_path / "preds.csv"
    _write(path, ["a.jpg", "b.jpg"])
    resumed = PredictionsFile(path, "m.test", "1.0.0")
    assert resumed.done == {"a.jpg", "b.jpg"}
    with resumed:
        resumed.append(_rows(["c.jpg"]))
    frame = pd.read_csv(path, keep_default_na=False)
    assert list(frame["file"]) == ["a.jpg", "b.jpg", "c.jpg"]
    assert path.read_text().count("file,akiec") == 1  # one header


def test_half_written_last_row_is_dropped_and_scored_again(tmp_path):
    path = tmp_path / "preds.csv"
    _write(path, ["a.jpg", "b.jpg"])
    complete = path.read_text()
    path.write_text(complete + "c.jpg,0.1,0.2")  # killed in the middle of a row
    resumed = PredictionsFile(path, "m.test", "1.0.0")
    assert resumed.done == {"a.jpg", "b.jpg"}
    with resumed:
        pass
    assert path.read_text() == complete


@pytest.mark.parametrize("content", ["", HEADER[:12]])
def test_empty_or_half_header_file_starts_over(tmp_path, content):
    path = tmp_path / "preds.csv"
    path.write_text(content)
    with PredictionsFile(path, "m.test", "1.0.0") as out:
        assert out.done == set()
    assert path.read_text() == HEADER


@pytest.mark.parametrize("model, message", [
    ({"model_id": "other.test"}, "holds predictions of m.test v1.0.0; this run uses other.test"),
    ({"model_version": "2.0.0"}, "this run uses m.test v2.0.0"),
])
def test_file_of_another_model_or_version_is_refused(tmp_path, model, message):
    path = tmp_path / "preds.csv"
    _write(path, ["a.jpg"])
    before = path.read_bytes()
    with pytest.raises(OutputFileError, match=message):
        PredictionsFile(path, **{"model_id": "m.test", "model_version": "1.0.0", **model})
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", ["patient,comment\n1,follow up\n", "no newline at all",
                                     b"\xff\xd8\xff\xe0 a JPEG"])
def test_file_that_is_not_a_predictions_csv_is_refused_untouched(tmp_path, content):
    path = tmp_path / "preds.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = path.read_bytes()
    with pytest.raises(OutputFileError, match="is not a predictions file"):
        PredictionsFile(path, "m.test", "1.0.0")
    assert path.read_bytes() == before


def test_folder_or_missing_folder_is_refused(tmp_path):
    with pytest.raises(OutputFileError, match="is a folder; expected a CSV file name"):
        PredictionsFile(tmp_path, "m.test", "1.0.0")
    with pytest.raises(OutputFileError, match="does not exist"):
        PredictionsFile(tmp_path / "missing" / "preds.csv", "m.test", "1.0.0")
    assert not (tmp_path / "missing").exists()
