"""Earlier versions of each model, kept beside the weights folder, and rollback to one of them.

The live model stays in ``weights/<id>/`` (sealed). Before a version is replaced, its whole
sealed folder is copied to ``<weights>.retraining/versions/<id>/<version>/<id>/`` (the inner
folder keeps the model id, so its manifest still verifies). Retraining candidates live in
``<weights>.retraining/candidates/<id>/<run>/`` with their ``decision.json``. Nothing here is
inside ``weights/``, so the registry never lists an archived version as a model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from lesionlib.cards import read_card
from lesionlib.integrity import verify_folder
from lesionlib.lineage import headline

DECISION_FILE = "decision.json"
HISTORY_COLUMNS = ("version", "status", "when", "parent_version", "corrections", "new_images",
                   "test_balanced_accuracy", "test_melanoma_auc", "reason")


def retraining_root(weights_dir: str | Path) -> Path:
    """``<weights>.retraining``: archived versions, candidates and the background job's files."""
    weights_dir = Path(weights_dir).resolve()
    return weights_dir.parent / f"{weights_dir.name}.retraining"


def archived_folder(weights_dir: Path, model_id: str, version: str) -> Path:
    return retraining_root(weights_dir) / "versions" / model_id / version / model_id


def archive_current(weights_dir: Path, model_id: str) -> Path:
    """Copy the live, verified folder of ``model_id`` into the archive (kept if already there).

    Raises:
        IntegrityError: the live folder differs from its manifest (nothing is archived).
    """
    live = Path(weights_dir) / model_id
    verify_folder(live)
    version = read_card(live).version
    target = archived_folder(weights_dir, model_id, version)
    if not target.is_dir():
        temporary = target.with_name(model_id + ".tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.copytree(live, temporary)
        temporary.replace(target)
    return target


def archived_versions(weights_dir: Path, model_id: str) -> list[str]:
    folder = retraining_root(weights_dir) / "versions" / model_id
    return sorted((path.name for path in folder.iterdir() if (path / model_id).is_dir()),
                  key=version_key) if folder.is_dir() else []


def version_key(version: str) -> tuple:
    return tuple(int(part) if part.isdigit() else 0 for part in str(version).split("."))


def next_version(weights_dir: Path, model_id: str, current: str) -> str:
    """The next minor version after every version seen so far (live, archived, candidates)."""
    seen = [current, *archived_versions(weights_dir, model_id),
            *(entry.get("version", "0") for entry in candidate_decisions(weights_dir, model_id))]
    major, minor = (list(version_key(max(seen, key=version_key))) + [0, 0])[:2]
    return f"{major}.{minor + 1}.0"


def install_folder(source: Path, weights_dir: Path, model_id: str) -> Path:
    """Replace ``weights/<id>/`` with a verified copy of ``source`` (a sealed folder of that id).

    The copy is verified before it replaces the live folder, so a failure leaves the live
    model as it was.
    """
    verify_folder(source)
    live = Path(weights_dir) / model_id
    staged = Path(weights_dir).parent / f".{model_id}.incoming"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    shutil.copytree(source, staged / model_id)
    verify_folder(staged / model_id)
    old = Path(weights_dir).parent / f".{model_id}.outgoing"
    shutil.rmtree(old, ignore_errors=True)
    if live.exists():
        live.replace(old)
    (staged / model_id).replace(live)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staged, ignore_errors=True)
    return live


def check_rollback(weights_dir: Path, model_id: str, version: str) -> str:
    """The live version of ``model_id``, after checking that ``version`` can replace it.

    Raises:
        KeyError: ``version`` is not archived for this model (the message lists those that are),
            or it is the live version already.
    """
    available = archived_versions(weights_dir, model_id)
    if version not in available:
        raise KeyError(f"No archived version {version!r} of {model_id!r}; archived: "
                       f"{available or 'none'} (in {retraining_root(weights_dir)}).")
    current = read_card(Path(weights_dir) / model_id).version
    if current == version:
        raise KeyError(f"{model_id!r} v{version} is already the live version.")
    return current


def candidate_decisions(weights_dir: Path, model_id: str) -> list[dict]:
    """Every retraining candidate's ``decision.json`` for ``model_id``, oldest first."""
    folder = retraining_root(weights_dir) / "candidates" / model_id
    decisions = []
    for path in sorted(folder.glob(f"*/{DECISION_FILE}")) if folder.is_dir() else []:
        try:
            decisions.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return decisions


def history(weights_dir: str | Path, model_id: str) -> pd.DataFrame:
    """One row per version of ``model_id``: live, archived and rejected candidates."""
    weights_dir = Path(weights_dir)
    rows = {}
    for version in archived_versions(weights_dir, model_id):
        rows[version] = _card_row(archived_folder(weights_dir, model_id, version), "archived")
    live = weights_dir / model_id
    if (live / "card.json").is_file():
        row = _card_row(live, "live")
        rows[row["version"]] = row
    for decision in candidate_decisions(weights_dir, model_id):
        if decision.get("promoted"):
            continue
        rows.setdefault(decision.get("version", "?"), {
            "version": decision.get("version", "?"), "status": "rejected candidate",
            "when": decision.get("finished_at", ""),
            "parent_version": decision.get("parent_version", ""),
            "corrections": decision.get("corrections"), "new_images": decision.get("new_images"),
            "test_balanced_accuracy": decision.get("challenger", {}).get(
                "ham10000_test/balanced_accuracy"),
            "test_melanoma_auc": decision.get("challenger", {}).get("ham10000_test/melanoma_auc"),
            "reason": decision.get("reason", "")})
    frame = pd.DataFrame(list(rows.values()), columns=list(HISTORY_COLUMNS))
    return frame.iloc[sorted(range(len(frame)), key=lambda index: version_key(
        frame["version"].iloc[index]), reverse=True)].reset_index(drop=True)


def _card_row(folder: Path, status: str) -> dict:
    card = read_card(folder)
    lineage = card.training.get("lineage") or {}
    retraining = card.training.get("retraining") or {}
    figures = headline(card.metrics)
    return {"version": card.version, "status": status, "when": retraining.get("finished_at", ""),
            "parent_version": lineage.get("parent_version", ""),
            "corrections": retraining.get("corrections"),
            "new_images": retraining.get("new_images"),
            "test_balanced_accuracy": figures.get("ham10000_test/balanced_accuracy"),
            "test_melanoma_auc": figures.get("ham10000_test/melanoma_auc"),
            "reason": lineage.get("changes", "")}


__all__ = ["retraining_root", "archive_current", "archived_versions", "next_version",
           "install_folder", "check_rollback", "candidate_decisions", "history"]
