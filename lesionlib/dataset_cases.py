"""Find a dataset image by its id (``ISIC_0024306``, ``IMD003``) in the dataset folders present.

Case review opens any image of HAM10000, ISIC 2017 or PH2 by id when that folder is here
(``../shared/data/<set>`` or beside ``$LESIONLIB_DATA``). Ids are checked before any lookup, and a
miss says which folders were searched. Nothing here imports Streamlit.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

DATASETS = {"ham10000": "HAM10000", "isic2017": "ISIC 2017", "ph2": "PH2",
            "bcn20000": "BCN20000"}
IMAGE_ID = re.compile(r"^(ISIC_\d{7}|IMD\d{3})$")
_EXTENSIONS = re.compile(r"\.(jpe?g|png|bmp)$", re.IGNORECASE)
TRAINING_SPLITS = {"ham10000": ("split_lesion_grouped", "train"), "isic2017": ("split", "train"),
                   "bcn20000": ("split_lesion_grouped", "train")}


def training_digests(folders: Mapping[str, Path | None]) -> frozenset[str]:
    """The sha256 of every image in a training split of the sets present (``labels.csv``'s
    ``sha256`` column): an upload with one of them is a training image, whatever its name."""
    digests: set[str] = set()
    for name, (column, value) in TRAINING_SPLITS.items():
        folder = folders.get(name)
        if folder is None or not (Path(folder) / "labels.csv").is_file():
            continue
        labels = pd.read_csv(Path(folder) / "labels.csv", dtype=str, keep_default_na=False)
        if "sha256" in labels.columns and column in labels.columns:
            digests.update(labels.loc[labels[column] == value, "sha256"].str.lower())
    return frozenset(digests)


@dataclasses.dataclass(frozen=True)
class DatasetImage:
    """One dataset image: its id, set, file and metadata.

    ``metadata`` holds what the set records, under the names the dashboard uses: ``dx`` (the
    HAM10000 class, where there is one), ``dx_type``, ``age``, ``sex``, ``localization``, and
    ``in_training_split`` (the image is in a split that models may have been trained on).
    """

    image_id: str
    dataset: str
    path: Path
    metadata: dict


def normalise_image_id(text) -> str:
    """``text`` as an image id (trimmed, upper case, a file extension dropped).

    Raises:
        ValueError: ``text`` is not of the form ``ISIC_`` + 7 digits or ``IMD`` + 3 digits.
    """
    if not isinstance(text, str):
        raise ValueError(f"An image id is text; received {type(text).__name__}.")
    candidate = _EXTENSIONS.sub("", text.strip()).upper()
    if not IMAGE_ID.match(candidate):
        shown = text.strip()[:40]
        raise ValueError(f"{shown!r} is not an image id: expected ISIC_ and 7 digits (HAM10000, "
                         "ISIC 2017, e.g. ISIC_0024306) or IMD and 3 digits (PH2, e.g. IMD003).")
    return candidate


def find_image(image_id: str, folders: Mapping[str, Path | None],
               labels: Mapping[str, pd.DataFrame] | None = None) -> DatasetImage:
    """The image ``image_id`` in the first dataset folder that lists it.

    Args:
        image_id: an id as typed; checked with ``normalise_image_id``.
        folders: dataset name (a key of ``DATASETS``) -> its folder, ``None`` when absent.
        labels: each set's ``labels.csv`` already read (read from the folder when missing).

    Raises:
        ValueError: ``image_id`` is not an image id.
        FileNotFoundError: no dataset folder is present, or the listed file is missing.
        KeyError: no present dataset lists the id (the message names those searched).
    """
    image_id = normalise_image_id(image_id)
    present = {name: Path(folder) for name, folder in folders.items() if folder is not None}
    if not present:
        raise FileNotFoundError(
            "No dataset folder is present here, so only the bundled sample images and uploads "
            "can be reviewed. Put the datasets in ../shared/data/ (or set LESIONLIB_DATA) to "
            "open any image by id.")
    for name, folder in present.items():
        table = (labels or {}).get(name)
        table = pd.read_csv(folder / "labels.csv") if table is None else table
        match = table[table["image_id"].astype(str) == image_id]
        if match.empty:
            continue
        row = match.iloc[0]
        path = folder / str(row["file"])
        if not path.is_file():
            raise FileNotFoundError(f"{image_id} is listed in {DATASETS.get(name, name)}'s "
                                    f"labels.csv but its file {row['file']} is missing.")
        return DatasetImage(image_id, name, path, _metadata(name, row))
    searched = ", ".join(DATASETS.get(name, name) for name in present)
    raise KeyError(f"{image_id} is not an image of the datasets present here ({searched}).")


def _metadata(dataset: str, row: pd.Series) -> dict:
    def known(value):
        return None if pd.isna(value) or str(value).strip() in ("", "unknown") else value

    age = pd.to_numeric(pd.Series([row.get("age", row.get("age_approximate"))]),
                        errors="coerce").iloc[0]
    split_column, training_value = TRAINING_SPLITS.get(dataset, (None, None))
    return {
        "dataset": dataset,
        "dx": known(row.get("dx_ham")),
        "dx_type": known(row.get("dx_type")),
        "age": None if pd.isna(age) else float(age),
        "sex": known(row.get("sex")),
        "localization": known(row.get("localization")),
        "in_training_split": bool(split_column and row.get(split_column) == training_value),
    }
