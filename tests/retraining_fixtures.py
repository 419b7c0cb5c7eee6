"""Test-only helpers for retraining: a tiny synthetic dataset in the ../shared/data layout.

Images are seeded noise tinted by class (48x36 px PNG), so the tiny models can be trained,
evaluated and gated in seconds. The folders mirror the real ones: ``ham10000`` with the
lesion-grouped split and sha256 column, ``isic2017`` (val/test, melanoma) and ``ph2``.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lesionlib.classes import CLASS_NAMES

PER_CLASS = {"train": 4, "val": 3, "test": 3}


def image_bytes(rng: np.random.Generator, label: int) -> bytes:
    """A 48x36 skin-coloured noise PNG with a class-dependent tint."""
    base = np.array([180, 130, 110], dtype="float64") + 12 * np.array(
        [np.cos(label), np.sin(label), np.cos(2 * label)])
    pixels = np.clip(base + rng.normal(0, 25, (36, 48, 3)), 0, 255).astype("uint8")
    pixels[10:26, 14:34] = (pixels[10:26, 14:34] * 0.55).astype("uint8")  # a darker "lesion"
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_set(folder: Path, rows: list[dict], rng) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for row in rows:
        content = image_bytes(rng, max(int(row.get("label", row.get("label_ham", 0))), 0))
        (folder / row["file"]).write_bytes(content)
        row["sha256"] = hashlib.sha256(content).hexdigest()
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)


def build_tiny_data(root: Path, seed: int = 0) -> Path:
    """``root/ham10000``, ``root/isic2017`` and ``root/ph2``; returns the HAM10000 folder."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, count in PER_CLASS.items():
        for label, name in enumerate(CLASS_NAMES):
            for index in range(count):
                image_id = f"HAMX_{split}_{name}_{index}"
                rows.append({"image_id": image_id, "lesion_id": f"L_{image_id}",
                             "file": f"images/{image_id}.png", "dx": name, "label": label,
                             "melanoma": int(name == "mel"), "dx_type": "histo", "age": 50,
                             "sex": "male", "localization": "back", "dataset": "synthetic",
                             "split_lesion_grouped": split})
    _write_set(root / "ham10000", rows, rng)
    for name, splits in (("isic2017", ("val", "test")), ("ph2", ("all",))):
        external = []
        for split in splits:
            for index in range(8):
                melanoma = index % 2
                label = CLASS_NAMES.index("mel") if melanoma else CLASS_NAMES.index("nv")
                image_id = f"{name.upper()}_{split}_{index}"
                external.append({"image_id": image_id, "file": f"images/{image_id}.png",
                                 "melanoma": melanoma, "label_ham": label, "split": split})
        _write_set(root / name, external, rng)
    return root / "ham10000"
