"""Making a model version live, as one atomic step, and rolling back to an archived one.

``promote`` stages a refreshed version of every ensemble that contains the model (card,
evaluation from stored predictions, gate) beside the archive while nothing live changes, writes a
journal, then swaps each folder in by a rename; ``finish_promotion`` completes a swap that a kill
interrupted. Used by ``lesionlib.retraining`` (a promoted challenger) and by ``rollback``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from lesionlib import evaluation, model_versions, registry
from lesionlib.cards import read_card


def fit_gate(weights: Path, model_id: str, ham10000: Path) -> None:
    """Fit ``model_id``'s quality gate in ``weights`` (``lesionlib.gate_fitting``)."""
    from lesionlib.gate_fitting import fit_model_gate

    fit_model_gate(model_id, weights, ham10000)


def gate_file() -> str:
    """The name of a model folder's quality-gate file."""
    from lesionlib.quality import GATE_FILE

    return GATE_FILE


PROMOTION_JOURNAL = "promotion.json"


def promote(weights_dir: Path, model_id: str, candidate_folder: Path,
            ham10000: Path | None = None, log=print, changes: str | None = None) -> list[str]:
    """Make the candidate live together with a refreshed version of every ensemble containing
    it, as one step; returns the ensembles' new ``id vVERSION``.

    Atomic in effect: each ensemble's new version is built, evaluated and gated in a staging
    folder beside the archive (with the candidate as its member) while nothing live changes;
    only then a journal is written and the folders are swapped in, each by a rename. A kill
    before the journal leaves the old state whole; a kill after it leaves a journal that
    ``finish_promotion`` (run by the same command again) completes. Meanwhile a half-swapped
    ensemble is refused by the catalogue, since its recorded member versions differ.
    """
    weights_dir = Path(weights_dir)
    pending = pending_promotion(weights_dir)
    if pending is not None:  # the same command again after a kill: finish, do not restart
        finished = finish_promotion(weights_dir, log)
        if Path(pending["candidate"]).resolve() == Path(candidate_folder).resolve():
            return finished
    old_version = read_card(weights_dir / model_id).version
    candidate = read_card(candidate_folder)
    changes = changes or f"member {model_id} v{old_version} -> v{candidate.version}"
    staging = (model_versions.retraining_root(weights_dir) / "promotion"
               / f"{model_id}-v{candidate.version}")
    shutil.rmtree(staging, ignore_errors=True)
    staged = _stage_ensembles(weights_dir, model_id, Path(candidate_folder), staging, changes,
                              ham10000, log)
    journal = {"model_id": model_id, "candidate": str(Path(candidate_folder).resolve()),
               "version": candidate.version, "ensembles": staged, "changes": changes}
    journal_path = model_versions.retraining_root(weights_dir) / PROMOTION_JOURNAL
    _write_atomically(journal_path, json.dumps(journal, indent=2))
    return finish_promotion(weights_dir, log)


def pending_promotion(weights_dir: Path) -> dict | None:
    """The journal of a promotion that a kill interrupted during its swap, or ``None``."""
    path = model_versions.retraining_root(weights_dir) / PROMOTION_JOURNAL
    return json.loads(path.read_text()) if path.is_file() else None


def finish_promotion(weights_dir: Path, log=print) -> list[str]:
    """Complete a promotion whose journal is left (a kill during the swap); a no-op without one.
    Returns the ensembles made live (``id vVERSION``). Each step can be repeated safely."""
    weights_dir = Path(weights_dir)
    journal_path = model_versions.retraining_root(weights_dir) / PROMOTION_JOURNAL
    if not journal_path.is_file():
        return []
    journal = json.loads(journal_path.read_text())
    model_id = journal["model_id"]
    # Ensembles first: a new ensemble beside the old member is refused by the catalogue (its
    # recorded member versions differ), whereas an old ensemble beside the new member may not
    # record its members' versions (cards before version 3) and would be served silently.
    steps = [(entry["id"], Path(entry["folder"]), entry["version"])
             for entry in journal["ensembles"]] + [
        (model_id, Path(journal["candidate"]), journal["version"])]
    for folder_id, source, version in steps:
        live = weights_dir / folder_id
        if (live / "card.json").is_file() and read_card(live).version == version:
            continue  # swapped in before the kill
        if live.is_dir():
            model_versions.archive_current(weights_dir, folder_id)
        model_versions.install_folder(source, weights_dir, folder_id)
        log(f"{folder_id}: version {version} is live ({journal['changes']})")
    journal_path.unlink()
    shutil.rmtree(model_versions.retraining_root(weights_dir) / "promotion", ignore_errors=True)
    return [f"{entry['id']} v{entry['version']}" for entry in journal["ensembles"]]


def _stage_ensembles(weights_dir: Path, model_id: str, candidate_folder: Path, staging: Path,
                     changes: str, ham10000: Path | None, log) -> list[dict]:
    """Build each ensemble containing ``model_id`` anew under ``staging`` (a weights folder whose
    members link to the live folders, and ``model_id`` to the candidate): card, evaluation and
    gate; returns ``[{"id", "folder", "version"}]``. Nothing live is touched."""
    from lesionlib.packaging import ensemble_card_data, lineage_for, write_ensemble

    catalogue = registry.discover(weights_dir)
    ensembles = [card for card in sorted(catalogue.cards.values(), key=lambda each: each.id)
                 if card.kind == "ensemble" and model_id in card.members]
    if not ensembles:
        return []
    staged_weights = staging / "weights"
    staged_weights.mkdir(parents=True)
    members = {member for card in ensembles for member in card.members}
    for member in sorted(members):
        source = candidate_folder if member == model_id else weights_dir / member
        (staged_weights / member).symlink_to(Path(source).resolve(), target_is_directory=True)
    staged_catalogue = registry.discover(staged_weights)
    staged = []
    for card in ensembles:
        had_gate = (card.folder / gate_file()).is_file()
        version = model_versions.next_version(weights_dir, card.id, card.version)
        folder = staged_weights / card.id
        write_ensemble(folder, ensemble_card_data(
            card.id, card.name, list(card.members), version=version,
            description=card.description, lineage=lineage_for(card.folder, changes),
            licence=card.licence, reproduce=card.reproduce,
            member_versions={member: staged_catalogue.cards[member].version
                             for member in card.members}))
        frames = evaluation.ensemble_uncalibrated(
            [registry.get_card(member, staged_catalogue) for member in card.members])
        if "ham10000_val" in frames:
            evaluation.finish_evaluation(read_card(folder), frames, "retrain: ensemble refresh")
            if had_gate and ham10000 is not None:
                fit_gate(staged_weights, card.id, ham10000)
            elif had_gate:
                log(f"warning: {card.id} has no quality gate now: run `python -m lesionlib "
                    f"fit-gate --model {card.id}`")
        staged.append({"id": card.id, "folder": str(folder), "version": version})
        log(f"{card.id}: version {version} staged ({changes})")
    return staged


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)


def rollback(weights_dir: Path, model_id: str, version: str, user: str, store,
             ham10000: Path | None = None, log=print) -> list[str]:
    """Make archived ``version`` live again, audited, with every ensemble containing it
    refreshed in the same atomic promotion (``promote``); the live version stays archived.

    Raises:
        KeyError: no such archived version (the message lists the archived ones), or it is the
            live one.
    """
    weights_dir = Path(weights_dir)
    finish_promotion(weights_dir, log)
    old = model_versions.check_rollback(weights_dir, model_id, version)
    refreshed = promote(weights_dir, model_id,
                        model_versions.archived_folder(weights_dir, model_id, version), ham10000,
                        log, changes=f"member {model_id} rolled back v{old} -> v{version}")
    store.audit("rollback", user, f"{model_id} v{old} -> v{version}")
    log(f"{model_id}: rolled back from v{old} to v{version}")
    return refreshed


__all__ = ["promote", "pending_promotion", "finish_promotion", "rollback", "fit_gate",
           "gate_file", "PROMOTION_JOURNAL"]
