"""Opening a dataset image by id: id checks, lookup across sets, clear misses."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lesionlib import dataset_cases

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_images"


@pytest.fixture
def folders(tmp_path) -> dict:
    """A HAM10000-like folder (the bundled samples) and an ISIC 2017-like one."""
    ham = tmp_path / "ham10000"
    (ham / "images").mkdir(parents=True)
    samples = pd.read_csv(SAMPLE_DIR / "labels.csv").head(3)
    for file in samples["file"]:
        (ham / "images" / file).write_bytes((SAMPLE_DIR / file).read_bytes())
    samples.assign(file="images/" + samples["file"], dx_ham=samples["dx"],
                   split_lesion_grouped="test").to_csv(ham / "labels.csv", index=False)
    isic = tmp_path / "isic2017"
    (isic / "images").mkdir(parents=True)
    (isic / "images" / "ISIC_0000001.jpg").write_bytes(
        (SAMPLE_DIR / samples["file"].iloc[0]).read_bytes())
    pd.DataFrame({"image_id": ["ISIC_0000001", "ISIC_0000002"],
                  "file": ["images/ISIC_0000001.jpg", "images/ISIC_0000002.jpg"],
                  "split": ["train", "test"], "dx_ham": ["mel", "nv"],
                  "age_approximate": ["55", None], "sex": ["female", None]}
                 ).to_csv(isic / "labels.csv", index=False)
    return {"ham10000": ham, "isic2017": isic, "ph2": None}


@pytest.mark.parametrize("typed, expected", [
    ("ISIC_0024306", "ISIC_0024306"), ("  isic_0024306.jpg ", "ISIC_0024306"),
    ("imd003", "IMD003")])
def test_ids_are_normalised(typed, expected):
    assert dataset_cases.normalise_image_id(typed) == expected


@pytest.mark.parametrize("typed", ["", "ISIC_123", "../etc/passwd", "ISIC_0024306; drop", 42])
def test_malformed_ids_are_refused_with_what_is_expected(typed):
    with pytest.raises(ValueError, match="ISIC_ and 7 digits|is text"):
        dataset_cases.normalise_image_id(typed)


def test_an_image_is_found_in_whichever_set_lists_it(folders):
    samples = pd.read_csv(SAMPLE_DIR / "labels.csv")
    first = samples.iloc[0]
    found = dataset_cases.find_image(first["image_id"].lower(), folders)
    assert found.dataset == "ham10000" and found.path.is_file()
    assert found.metadata["dx"] == first["dx"] and not found.metadata["in_training_split"]
    external = dataset_cases.find_image("ISIC_0000001", folders)
    assert external.dataset == "isic2017"
    assert external.metadata == {"dataset": "isic2017", "dx": "mel", "dx_type": None,
                                 "age": 55.0, "sex": "female", "localization": None,
                                 "in_training_split": True}


def test_unknown_missing_and_absent_are_clear(folders):
    with pytest.raises(KeyError, match=r"ISIC_9999999 is not an image of the datasets present "
                                       r"here \(HAM10000, ISIC 2017\)"):
        dataset_cases.find_image("ISIC_9999999", folders)
    with pytest.raises(FileNotFoundError, match="file images/ISIC_0000002.jpg is missing"):
        dataset_cases.find_image("ISIC_0000002", folders)
    with pytest.raises(FileNotFoundError, match="No dataset folder is present"):
        dataset_cases.find_image("ISIC_0024306", {"ham10000": None})
