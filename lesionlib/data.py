"""Dataset folders in the ``../shared/data/*`` layout: ``labels.csv`` (+ HAM10000 metadata).

A dataset folder has a ``labels.csv`` with a ``file`` column (relative to the folder) and a label
column (``label`` for HAM10000, ``label_ham`` / ``melanoma`` for the external sets). Where it is:
the ``--data`` option, else ``$LESIONLIB_DATA``, else ``../shared/data/ham10000`` beside the repo.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlib.classes import CLASS_NAMES
from lesionlib.imaging import ImageLoadError, frame_square, load_image

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CACHE_DIR = Path(os.environ.get("LESIONLIB_CACHE", REPO_ROOT / ".cache"))
DATA_ENV = "LESIONLIB_DATA"
SPLIT_COLUMN = "split_lesion_grouped"
EXTERNAL_SETS = ("isic2017", "ph2")
CLINIC_SETS = ("bcn20000",)  # seven-class sets of other clinics, with train / val / test
EXTRA_TRAINING_SETS = ("isic2017", "bcn20000")


def resolve_data_dir(explicit: str | Path | None = None, name: str = "ham10000") -> Path | None:
    """Find a dataset folder: explicit path, then ``$LESIONLIB_DATA``, then ``../shared/data``.

    For ``name != "ham10000"`` the environment folder is taken as HAM10000's and its siblings
    are searched. A configured ``$LESIONLIB_DATA`` is never silently replaced by the default.
    Returns ``None`` when the folder in force has no ``labels.csv``.

    Raises:
        FileNotFoundError: an explicitly given folder has no ``labels.csv``.
    """
    if explicit:
        folder = Path(explicit).expanduser()
        if not (folder / "labels.csv").is_file():
            raise FileNotFoundError(f"{folder} has no labels.csv; expected a dataset folder in "
                                    "the layout of ../shared/data/<set>/.")
        return folder
    if os.environ.get(DATA_ENV):  # a configured folder wins, even when it is unusable
        configured = Path(os.environ[DATA_ENV]).expanduser()
        folder = configured if name == "ham10000" else configured.parent / name
    else:
        folder = SHARED_DATA / name
    return folder if (folder / "labels.csv").is_file() else None


def load_labels(folder: str | Path) -> pd.DataFrame:
    """Read ``labels.csv`` and add ``path`` (absolute) and ``label`` (class index or -1)."""
    folder = Path(folder)
    frame = pd.read_csv(folder / "labels.csv")
    if "file" not in frame.columns:
        raise ValueError(f"{folder / 'labels.csv'} has no 'file' column; columns are "
                         f"{list(frame.columns)}.")
    frame["path"] = [str(folder / file) for file in frame["file"]]
    if "label" not in frame.columns:
        frame["label"] = frame.get("label_ham", pd.Series(-1, index=frame.index))
    frame["label"] = frame["label"].fillna(-1).astype(int)
    if "melanoma" not in frame.columns:
        frame["melanoma"] = (frame["label"] == CLASS_NAMES.index("mel")).astype(int)
    if "age" in frame.columns:
        frame["age_band"] = age_bands(frame["age"])
    return frame


def age_bands(ages: pd.Series) -> pd.Series:
    """Bin ages into the bands used for subgroup reports (``unknown`` where missing)."""
    bands = pd.cut(ages, bins=[-1, 29, 44, 59, 74, 200],
                   labels=["<30", "30-44", "45-59", "60-74", "75+"])
    return bands.cat.add_categories(["unknown"]).fillna("unknown").astype(str)


def select_split(frame: pd.DataFrame, split: str) -> pd.DataFrame:
    """Rows of one split: HAM10000's lesion-grouped split, or an external set's own ``split``.

    ``split`` may be ``"all"`` or several joined by ``+`` (e.g. ``"val+test"``).
    """
    if split == "all":
        return frame.reset_index(drop=True)
    column = SPLIT_COLUMN if SPLIT_COLUMN in frame.columns else "split"
    if column not in frame.columns:
        raise ValueError(f"The dataset has no {SPLIT_COLUMN!r} or 'split' column; use split='all'.")
    wanted = split.split("+")
    unknown = set(wanted) - set(frame[column].unique())
    if unknown:
        raise ValueError(f"Unknown split(s) {sorted(unknown)}; the dataset has "
                         f"{sorted(frame[column].unique())}.")
    return frame[frame[column].isin(wanted)].reset_index(drop=True)


def _load_framed(path: str, size: int) -> np.ndarray:
    return frame_square(load_image(path), size)


def load_images(paths: list[str], size: int, workers: int = 4) -> np.ndarray:
    """Decode and frame images into one ``uint8`` array ``(n, size, size, 3)``.

    Raises:
        ImageLoadError: one or more dataset images are unreadable; the message lists every one
            (all are tried first), since labels and images must stay aligned.
    """
    def load(path):
        try:
            return _load_framed(path, size)
        except ImageLoadError as error:
            return error

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(load, paths))
    failures = [str(result) for result in results if isinstance(result, ImageLoadError)]
    if failures:
        listed = "; ".join(failures[:10]) + (f"; and {len(failures) - 10} more"
                                              if len(failures) > 10 else "")
        raise ImageLoadError(f"{len(failures)} of {len(paths)} dataset images cannot be used: "
                             f"{listed}. Fix or remove them from labels.csv.")
    return np.stack(results)


def cached_images(frame: pd.DataFrame, size: int, tag: str) -> np.ndarray:
    """``load_images`` with an ``.npy`` cache in ``.cache/`` keyed by the file list and size."""
    digest = hashlib.sha256("\n".join(frame["path"]).encode()).hexdigest()[:12]
    path = CACHE_DIR / f"{tag}_{size}_{digest}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    images = load_images(list(frame["path"]), size)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npy")
    np.save(temporary, images)
    temporary.replace(path)
    return images


def balanced_sample(frame: pd.DataFrame, per_class: int, seed: int = 0) -> pd.DataFrame:
    """Up to ``per_class`` rows of each ``label`` of ``frame`` (seeded)."""
    return frame.groupby("label", group_keys=False).apply(
        lambda group: group.sample(min(len(group), per_class), random_state=seed))


def training_arrays(folder: Path, size: int, extra_sets: tuple[str, ...] = (), log=print,
                    extra_validation: tuple[str, ...] = ()) -> dict:
    """``{"train": (images, labels), "val": (...), "extra_val": {name: (...)}, "train_groups":
    each training image's set (``"ham10000"``, ``"isic2017"``, ...)}``: HAM10000's
    lesion-grouped train split plus the ``train`` split of each extra set (its ``label_ham``
    column), HAM10000 validation, and the ``val`` split of each ``extra_validation`` set.

    Raises:
        FileNotFoundError: an extra set's folder is missing.
    """
    labels = load_labels(folder)
    parts = {split: [(select_split(labels, split), f"ham10000_{split}")]
             for split in ("train", "val")}
    for name in extra_sets:
        extra_folder = resolve_data_dir(name=name)
        if extra_folder is None:
            raise FileNotFoundError(f"Extra training set {name!r} not found beside {folder}.")
        frame = select_split(load_labels(extra_folder), "train")
        parts["train"].append((frame[frame["label"] >= 0].reset_index(drop=True),
                               f"{name}_train"))
    arrays = {}
    for split, frames in parts.items():
        images, targets, groups = [], [], []
        for frame, tag in frames:
            log(f"Loading {len(frame)} {tag} images at {size}px ...")
            images.append(np.asarray(cached_images(frame, size, tag)))
            targets.append(frame["label"].to_numpy("int32"))
            groups.append(np.full(len(frame), tag.rsplit("_", 1)[0]))
        arrays[split] = (np.concatenate(images), np.concatenate(targets))
        arrays[f"{split}_groups"] = np.concatenate(groups)
    arrays["extra_val"] = {}
    for name in extra_validation:
        extra_folder = resolve_data_dir(name=name)
        if extra_folder is None:
            raise FileNotFoundError(f"Extra validation set {name!r} not found beside {folder}.")
        frame = select_split(load_labels(extra_folder), "val")
        frame = frame[frame["label"] >= 0].reset_index(drop=True)
        log(f"Loading {len(frame)} {name}_val images at {size}px ...")
        arrays["extra_val"][name] = (np.asarray(cached_images(frame, size, f"{name}_val")),
                                     frame["label"].to_numpy("int32"))
    return arrays


def iter_image_files(folder: str | Path) -> Iterator[Path]:
    """Every file of a folder that ``predict --images FOLDER`` scores, sorted by name.

    Whatever the name ends with or is: a file that is not an image, a broken or looping symbolic
    link, a FIFO or a socket gets its own error row downstream. Hidden files (``.DS_Store``,
    ``._*``) and subfolders are left out.
    """
    for path in sorted(Path(folder).iterdir()):
        if not path.name.startswith(".") and not path.is_dir():
            yield path


__all__ = ["resolve_data_dir", "load_labels", "select_split", "load_images", "cached_images",
           "training_arrays",
           "age_bands", "iter_image_files", "ImageLoadError", "EXTERNAL_SETS"]
