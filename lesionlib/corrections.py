"""Which reviewers' corrections may enter retraining.

A correction is a feedback record that disagrees with the model and names a ``corrected_class``.
It enters training only when

- an administrator other than its author approved it (``FeedbackStore.decide_correction``; the
  latest verdict on a record counts, so a later "reject" withdraws an approval), or
- two different reviewers corrected the same case to the same class.

One reviewer alone can never change a model. A case is the uploaded file (its sha256) or, when
there was no upload, its ``case_id``. A case whose accepted corrections name different classes is
left out as a conflict. Cases that belong to the fixed evaluation sets (HAM10000 validation and
test, ISIC 2017, PH2: by image id or file sha256) are left out too: training on them would leak
into the very figures that decide promotion.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlib.classes import CLASS_NAMES

CONSENSUS_REVIEWERS = 2
ACCEPTED_COLUMNS = ("case_key", "case_id", "corrected_class", "record_ids", "reviewers", "basis",
                    "image_record_id")
EXCLUDED_COLUMNS = ("case_key", "case_id", "record_ids", "reason")


@dataclasses.dataclass(frozen=True)
class FixedSets:
    """Image ids and file sha256 digests of the fixed evaluation sets (never trained on)."""

    image_ids: frozenset[str] = frozenset()
    sha256: frozenset[str] = frozenset()

    def contains(self, case_id: str, image_sha256: str | None) -> bool:
        return (Path(str(case_id)).stem in self.image_ids
                or (bool(image_sha256) and image_sha256 in self.sha256))


def fixed_sets(ham10000: Path | None, external: dict[str, Path | None]) -> FixedSets:
    """The fixed sets: HAM10000's val and test splits, and the evaluated part of each external
    set (``evaluation.EVALUATION_SETS``: ISIC 2017 val+test, all of PH2, BCN20000 val+test).
    ISIC 2017's and BCN20000's training
    split is not an evaluation set (the v2 recipe trains on it), so a correction on one of its
    images may enter training."""
    from lesionlib import data
    from lesionlib.evaluation import EVALUATION_SETS

    splits: dict[str, str] = {}  # folder -> every split of it that is evaluated ("val+test")
    for folder, split in EVALUATION_SETS.values():
        splits[folder] = f"{splits[folder]}+{split}" if folder in splits else split
    frames = []
    if ham10000 is not None:
        frames.append(data.select_split(data.load_labels(ham10000), "val+test"))
    for name, folder in external.items():
        if folder is not None:
            frames.append(data.select_split(data.load_labels(folder), splits.get(name, "all")))
    ids, digests = set(), set()
    for frame in frames:
        ids.update(frame["image_id"].astype(str) if "image_id" in frame else ())
        digests.update(frame["sha256"].dropna().astype(str) if "sha256" in frame else ())
    return FixedSets(frozenset(ids), frozenset(digests))


def _latest_verdicts(decisions: pd.DataFrame) -> dict[int, tuple[str, str]]:
    """``record id -> (decision, admin)`` of the latest verdict on each record."""
    verdicts = {}
    for row in decisions.sort_values("id").itertuples():
        verdicts[int(row.record_id)] = (row.decision, row.admin)
    return verdicts


def select_corrections(records: pd.DataFrame, decisions: pd.DataFrame,
                       fixed: FixedSets = FixedSets()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the corrections among ``records`` into accepted and excluded cases.

    Args:
        records: ``FeedbackStore.records()``.
        decisions: ``FeedbackStore.correction_decisions()``.
        fixed: the fixed evaluation sets; their cases are excluded.

    Returns:
        ``(accepted, excluded)``: one row per case, with ``ACCEPTED_COLUMNS`` (``basis`` says
        why it was accepted, ``image_record_id`` the record whose stored image to train on, or
        -1) and ``EXCLUDED_COLUMNS`` (``reason``).
    """
    corrections = records[~records["agree"] & records["corrected_class"].isin(CLASS_NAMES)].copy()
    corrections["case_key"] = [sha if isinstance(sha, str) and sha else f"case:{case}"
                               for sha, case in zip(corrections["image_sha256"],
                                                    corrections["case_id"])]
    verdicts = _latest_verdicts(decisions)
    accepted, excluded = [], []
    for case_key, group in corrections.groupby("case_key", sort=True):
        case_id = str(group["case_id"].iloc[-1])
        record_ids = [int(value) for value in group["id"]]
        if fixed.contains(case_id, group["image_sha256"].iloc[-1]):
            excluded.append((case_key, case_id, record_ids, "belongs to a fixed evaluation set "
                             "(HAM10000 validation/test, ISIC 2017 val+test, PH2): never trained on"))
            continue
        votes = _class_votes(group, verdicts)
        if not votes:
            excluded.append((case_key, case_id, record_ids,
                             _waiting_reason(group, verdicts)))
            continue
        if len(votes) > 1:
            excluded.append((case_key, case_id, record_ids, "conflict: accepted corrections "
                             f"name different classes ({', '.join(sorted(votes))})"))
            continue
        (corrected, basis), = votes.items()
        chosen = group[group["corrected_class"] == corrected]
        with_image = chosen[chosen["has_image"]]
        accepted.append((case_key, case_id, corrected, record_ids,
                         sorted(set(chosen["reviewer"])), basis,
                         int(with_image["id"].iloc[-1]) if len(with_image) else -1))
    return (pd.DataFrame(accepted, columns=list(ACCEPTED_COLUMNS)),
            pd.DataFrame(excluded, columns=list(EXCLUDED_COLUMNS)))


def _class_votes(group: pd.DataFrame, verdicts: dict[int, tuple[str, str]]) -> dict[str, str]:
    """``corrected class -> basis`` for each class this case's corrections establish."""
    votes = {}
    for corrected, same in group.groupby("corrected_class"):
        approvals = [verdicts[int(record_id)][1] for record_id in same["id"]
                     if verdicts.get(int(record_id), ("", ""))[0] == "approve"]
        withdrawn = {int(record_id) for record_id in same["id"]
                     if verdicts.get(int(record_id), ("", ""))[0] == "reject"}
        reviewers = set(same.loc[~same["id"].isin(withdrawn), "reviewer"])
        if approvals:
            votes[corrected] = f"approved by {', '.join(sorted(set(approvals)))}"
        elif len(reviewers) >= CONSENSUS_REVIEWERS:
            votes[corrected] = f"{len(reviewers)} reviewers agree"
    return votes


def _waiting_reason(group: pd.DataFrame, verdicts: dict[int, tuple[str, str]]) -> str:
    if all(verdicts.get(int(record_id), ("", ""))[0] == "reject" for record_id in group["id"]):
        return "rejected by an administrator"
    return ("awaiting approval: one reviewer's correction needs an administrator's approval or "
            "a second reviewer naming the same class")


__all__ = ["FixedSets", "fixed_sets", "select_corrections", "CONSENSUS_REVIEWERS"]


def own_view(accepted: pd.DataFrame, excluded: pd.DataFrame, records: pd.DataFrame,
             reviewer: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What ``reviewer`` (not an administrator) may see of ``select_corrections``' result: only
    the cases that hold one of their own corrections, with only their own record ids and no
    other reviewer's name. Case references (upload names) can carry patient identifiers, so a
    reviewer never sees another reviewer's."""
    own_ids = {int(value) for value in records.loc[records["reviewer"] == reviewer, "id"]}

    def restricted(frame: pd.DataFrame) -> pd.DataFrame:
        mine = np.array([bool(own_ids & set(ids)) for ids in frame["record_ids"]], dtype=bool)
        frame = frame.loc[mine].copy()
        frame["record_ids"] = [sorted(own_ids & set(ids)) for ids in frame["record_ids"]]
        return frame.reset_index(drop=True)

    accepted, excluded = restricted(accepted), restricted(excluded)
    if not accepted.empty:
        accepted["reviewers"] = [
            [reviewer] + ([f"and {len(names) - 1} other reviewer(s)"] if len(names) > 1 else [])
            for names in accepted["reviewers"]]
        accepted["image_record_id"] = [value if value in own_ids else -1
                                       for value in accepted["image_record_id"]]
    return accepted, excluded
