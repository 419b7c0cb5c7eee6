"""Dataset folders: where they are found, the lesion-grouped split, label handling."""

from pathlib import Path

import pandas as pd
import pytest

from conftest import SHARED_HAM, needs_dataset
from lesionlib import data


def _make_folder(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder


def test_explicit_folder_wins_and_must_have_labels(tmp_path, monkeypatch):
    other = _make_folder(tmp_path / "env", [{"file": "a.jpg", "label": 1}])
    explicit = _make_folder(tmp_path / "explicit", [{"file": "a.jpg", "label": 1}])
    monkeypatch.setenv(data.DATA_ENV, str(other))
    assert data.resolve_data_dir(explicit) == explicit
    assert data.resolve_data_dir() == other
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        data.resolve_data_dir(tmp_path / "missing")


def test_nothing_configured_and_no_default_gives_none(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setattr(data, "SHARED_DATA", tmp_path / "nowhere")
    assert data.resolve_data_dir() is None


def test_labels_of_an_external_set_and_split_selection(tmp_path):
    folder = _make_folder(tmp_path / "isic", [
        {"file": "a.jpg", "label_ham": 4, "melanoma": 1, "split": "val"},
        {"file": "b.jpg", "label_ham": None, "melanoma": 0, "split": "test"},
        {"file": "c.jpg", "label_ham": 5, "melanoma": 0, "split": "train"}])
    frame = data.load_labels(folder)
    assert list(frame["label"]) == [4, -1, 5]
    assert list(data.select_split(frame, "val+test")["file"]) == ["a.jpg", "b.jpg"]
    with pytest.raises(ValueError, match="Unknown split"):
        data.select_split(frame, "holdout")


@needs_dataset
def test_shared_split_is_grouped_by_lesion():
    frame = data.load_labels(SHARED_HAM)
    splits_per_lesion = frame.groupby("lesion_id")["split_lesion_grouped"].nunique()
    assert (splits_per_lesion == 1).all()
    counts = frame["split_lesion_grouped"].value_counts().to_dict()
    assert counts == {"train": 6998, "val": 1508, "test": 1509}


def test_age_bands():
    bands = data.age_bands(pd.Series([5.0, 30.0, 50.0, 80.0, None]))
    assert list(bands) == ["<30", "30-44", "45-59", "75+", "unknown"]


def test_configured_folder_is_not_silently_replaced_by_the_default(tmp_path, monkeypatch):
    default = _make_folder(tmp_path / "shared" / "ham10000", [{"file": "a.jpg", "label": 1}])
    monkeypatch.setattr(data, "SHARED_DATA", default.parent)
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    assert data.resolve_data_dir() == default
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "mistyped"))
    assert data.resolve_data_dir() is None


def test_broken_dataset_images_are_all_listed(tmp_path):
    from conftest import SAMPLE_DIR

    good = sorted(SAMPLE_DIR.glob("*.jpg"))[0]
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    paths = [str(good), str(tmp_path / "broken.jpg"), str(tmp_path / "empty.jpg")]
    with pytest.raises(data.ImageLoadError, match=r"2 of 3 dataset images.*broken.jpg.*empty.jpg"):
        data.load_images(paths, 32)
    assert data.load_images([str(good)], 32).shape == (1, 32, 32, 3)


def test_upload_limit_is_configured_for_the_app():
    import tomllib

    from conftest import REPO_ROOT

    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    # MB. The app refuses uploads over ui.UPLOAD_LIMIT_MB with a visible message; the
    # transport limit is above it so that such files reach the app (see config.toml).
    from app import ui
    from lesionlib import imaging

    assert ui.UPLOAD_LIMIT_MB * 1e6 <= imaging.MAX_FILE_BYTES  # the loader's own cap
    assert ui.UPLOAD_LIMIT_MB <= config["server"]["maxUploadSize"] <= 100
