"""Reader study: what the models do to the people who use them (the human-AI team).

An administrator creates a study: a name, a case list with reference diagnoses, the model, the
forms of AI support to compare, how they are assigned, and whether readers also give a management
decision and a confidence. The model's output on every case is computed once, at creation, and
stored with the study, so every reader sees the same AI answer. Each reader sees the cases in
their own seeded order; per case they commit a diagnosis on the image alone, then see their
assigned support and may revise. Both answers, the support form, the AI's answer and version and
the time of each step are stored in the feedback database (``lesionlib.database``: SQLite or
PostgreSQL, many readers at once).

``lesionlib.reader_results`` reads a study out. Motivated by Tschandl et al.
(Nat Med 2020), Kiani et al. (2020), Barata et al. (Nat Med 2023), GMLP principle 7, DECIDE-AI
item 12. Nothing here imports Streamlit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from lesionlib import database
from lesionlib.classes import CLASS_NAMES

SUPPORT_FORMS = {
    "none": "no AI support",
    "probabilities": "the AI's probabilities",
    "heatmap": "the AI's probabilities and heatmap",
    "similar": "similar training cases",
    "all": "probabilities, heatmap and similar cases",
}
ASSIGNMENTS = {
    "per_case": "per case: each case has one support form for every reader",
    "randomised": "randomised: each reader's form for each case drawn at random",
    "balanced": "balanced per reader: each reader gets every form equally often",
}
EXPERIENCE_LEVELS = ("student", "resident", "dermatologist", "other")
MANAGEMENT = ("excise", "follow up", "reassure")
CONFIDENCE_LEVELS = (1, 2, 3, 4, 5)  # 1: a guess ... 5: certain
CASE_SOURCES = {
    "samples": "the 21 bundled sample images (HAM10000 test split)",
    "ham10000_test": "HAM10000 test split",
    "isic2017": "ISIC 2017 validation and test images",
    "ph2": "PH2",
    "bcn20000_test": "BCN20000 test split (another clinic)",
    "folder": "a folder with a labels.csv (file and diagnosis columns)",
}
_SOURCE_ROWS = {  # source -> (dataset folder name, split column, kept split values)
    "ham10000_test": ("ham10000", "split_lesion_grouped", ("test",)),
    "isic2017": ("isic2017", "split", ("val", "test")),
    "ph2": ("ph2", None, ()),
    "bcn20000_test": ("bcn20000", "split_lesion_grouped", ("test",)),
}
MAX_CASES = 500
MELANOMA = "mel"


class ReaderStudyError(database.DatabaseError):
    """The reader-study tables could not be read or written; the message says where and why."""


class StudyInputError(ValueError):
    """A study that cannot be created as asked (the message says what was received and what is
    expected)."""


@dataclasses.dataclass(frozen=True)
class StudyCase:
    """One case of a study: its image, reference and the AI's stored answer on it."""

    index: int
    file: str
    reference: str
    source: str
    ai_probabilities: dict
    ai_answer: str
    ai_melanoma_probability: float
    ai_melanoma_flag: bool
    ai_warning: str = ""

    @property
    def ai_right(self) -> bool:
        return self.ai_answer == self.reference


@dataclasses.dataclass(frozen=True)
class Study:
    """A reader study as created by an administrator."""

    name: str
    model_id: str
    model_version: str
    model_name: str
    intended_use: str
    melanoma_threshold: float
    source: str
    support_forms: tuple[str, ...]
    assignment: str
    seed: int
    ask_management: bool
    ask_confidence: bool
    cases: tuple[StudyCase, ...]
    created_by: str = ""
    created_at: str = ""
    id: int | None = None
    salt: str = ""

    def plan(self, reader: str) -> list[tuple[int, str]]:
        """The reader's cases in their own order, each with its support form:
        ``[(case index, form), ...]``; the same reader always gets the same plan."""
        reader_rng = np.random.default_rng([self.seed, _stable_int(reader)])
        order = [int(index) for index in reader_rng.permutation(len(self.cases))]
        forms = list(self.support_forms)
        if self.assignment == "per_case":
            case_rng = np.random.default_rng([self.seed, 1])
            per_case = _balanced(len(self.cases), forms, case_rng)
            return [(index, per_case[index]) for index in order]
        if self.assignment == "randomised":
            return [(index, forms[int(reader_rng.integers(len(forms)))]) for index in order]
        balanced = _balanced(len(self.cases), forms, reader_rng)
        return [(index, balanced[position]) for position, index in enumerate(order)]

    def pseudonym(self, reader: str) -> str:
        """A reader's id in exports: stable within the study, not reversible without its salt."""
        return "R-" + hashlib.sha256(f"{self.salt}:{reader}".encode()).hexdigest()[:8]


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _balanced(count: int, forms: list[str], rng: np.random.Generator) -> list[str]:
    """``count`` forms, each as often as possible (differing by at most one), shuffled."""
    repeated = (forms * (count // len(forms) + 1))[:count]
    return [repeated[int(index)] for index in rng.permutation(count)]


# ----------------------------------------------------------------------------- case lists

def case_list(source: str, folders: dict, count: int, seed: int,
              folder: Path | None = None) -> pd.DataFrame:
    """Up to ``count`` cases (``file``, ``reference``, ``source``) from ``source``, balanced over
    the reference classes present (as many of each as possible, seeded), in a fixed order.

    ``folders`` maps dataset names (``ham10000``, ``isic2017``, ``ph2``, ``bcn20000``,
    ``samples``) to their folders here (``None`` when absent); ``folder`` is the folder of the
    ``"folder"`` source.

    Raises:
        StudyInputError: an unknown source, a missing folder or labels.csv, no usable case.
    """
    if source not in CASE_SOURCES:
        raise StudyInputError(f"Unknown case source {source!r}; expected one of "
                              f"{', '.join(CASE_SOURCES)}.")
    if not 1 <= int(count) <= MAX_CASES:
        raise StudyInputError(f"A study has 1 to {MAX_CASES} cases; received {count}.")
    if source == "folder":
        labels_folder = Path(folder) if folder else None
        split_column, kept = None, ()
    elif source == "samples":
        labels_folder, split_column, kept = folders.get("samples"), None, ()
    else:
        name, split_column, kept = _SOURCE_ROWS[source]
        labels_folder = folders.get(name)
    if labels_folder is None or not (Path(labels_folder) / "labels.csv").is_file():
        raise StudyInputError(f"{CASE_SOURCES[source]}: no labels.csv here"
                              + (f" in {labels_folder}" if labels_folder else "")
                              + "; put the dataset in ../shared/data or choose another source.")
    labels = pd.read_csv(Path(labels_folder) / "labels.csv", dtype=str, keep_default_na=False)
    frame = _labelled_rows(labels, Path(labels_folder), split_column, kept)
    if frame.empty:
        raise StudyInputError(f"{CASE_SOURCES[source]}: no image with one of the seven "
                              f"diagnoses ({', '.join(CLASS_NAMES)}) and a file here.")
    rng = np.random.default_rng(seed)
    frame = frame.iloc[rng.permutation(len(frame))]
    frame["rank"] = frame.groupby("reference").cumcount()  # round-robin over classes
    chosen = frame.sort_values(["rank", "reference"]).head(int(count))
    chosen = chosen.iloc[rng.permutation(len(chosen))]
    return chosen.assign(source=source)[["file", "reference", "source"]].reset_index(drop=True)


def _labelled_rows(labels: pd.DataFrame, folder: Path, split_column: str | None,
                   kept: tuple) -> pd.DataFrame:
    """Rows of a labels.csv with a seven-class reference and an image file present."""
    if "file" not in labels.columns:
        raise StudyInputError(f"{folder / 'labels.csv'} has no 'file' column; expected 'file' "
                              "and a diagnosis column ('dx_ham', 'dx' or 'label').")
    reference_column = next((column for column in ("dx_ham", "dx", "label")
                             if column in labels.columns), None)
    if reference_column is None:
        raise StudyInputError(f"{folder / 'labels.csv'} has no diagnosis column; expected "
                              "'dx_ham', 'dx' or 'label' with one of "
                              f"{', '.join(CLASS_NAMES)}.")
    if split_column and split_column in labels.columns:
        labels = labels[labels[split_column].isin(kept)]
    reference = labels[reference_column].str.strip().str.lower()
    files = labels["file"].map(lambda name: str((folder / name).resolve()))
    frame = pd.DataFrame({"file": files, "reference": reference})
    frame = frame[frame["reference"].isin(CLASS_NAMES)]
    return frame[frame["file"].map(lambda path: Path(path).is_file())].reset_index(drop=True)


def score_cases(classifier, cases: pd.DataFrame, quality_check=None) -> list[StudyCase]:
    """The AI's answer on every case, computed once for the study (``inference.predict_files``).

    Raises:
        StudyInputError: an image cannot be read (the message names the case, not its file).
    """
    from lesionlib import inference

    frame = inference.predict_files(classifier, list(cases["file"]), quality_check=quality_check)
    threshold = classifier.card.melanoma_threshold
    scored = []
    for index, (case, row) in enumerate(zip(cases.itertuples(), frame.itertuples())):
        if row.error:
            raise StudyInputError(f"Case {index + 1} cannot be read: {row.error}")
        probabilities = {name: float(getattr(row, name)) for name in CLASS_NAMES}
        scored.append(StudyCase(
            index=index, file=case.file, reference=case.reference, source=case.source,
            ai_probabilities=probabilities, ai_answer=max(probabilities, key=probabilities.get),
            ai_melanoma_probability=probabilities[MELANOMA],
            ai_melanoma_flag=probabilities[MELANOMA] >= threshold,
            ai_warning=str(row.warning or "")))
    return scored


def new_study(name: str, card, source: str, support_forms, assignment: str, seed: int,
              ask_management: bool, ask_confidence: bool, cases: list[StudyCase],
              created_by: str) -> Study:
    """A checked ``Study`` (not yet stored).

    Raises:
        StudyInputError: an empty or over-long name, an unknown support form or assignment, no
            case.
    """
    name = " ".join(str(name or "").split())
    if not 1 <= len(name) <= 120:
        raise StudyInputError(f"A study needs a name of 1 to 120 characters; received "
                              f"{len(name)}.")
    forms = tuple(dict.fromkeys(support_forms))
    unknown = [form for form in forms if form not in SUPPORT_FORMS]
    if not forms or unknown:
        raise StudyInputError(f"Support forms: expected one or more of "
                              f"{', '.join(SUPPORT_FORMS)}; received {list(support_forms)}.")
    if assignment not in ASSIGNMENTS:
        raise StudyInputError(f"Assignment: expected one of {', '.join(ASSIGNMENTS)}; "
                              f"received {assignment!r}.")
    if not cases:
        raise StudyInputError("A study needs at least one case.")
    return Study(name=name, model_id=card.id, model_version=card.version, model_name=card.name,
                 intended_use=card.intended_use, melanoma_threshold=card.melanoma_threshold,
                 source=source, support_forms=forms, assignment=assignment, seed=int(seed),
                 ask_management=bool(ask_management), ask_confidence=bool(ask_confidence),
                 cases=tuple(cases), created_by=created_by, salt=secrets.token_hex(16))


# ----------------------------------------------------------------------------- storage

_schema = sa.MetaData()
_studies = sa.Table(
    "reader_studies", _schema,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(120), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime, nullable=False),  # naive UTC
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("definition", sa.Text, nullable=False),  # the Study as JSON (cases included)
)
_profiles = sa.Table(
    "reader_profiles", _schema,
    sa.Column("reader", sa.String(255), primary_key=True),
    sa.Column("experience", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
_answers = sa.Table(
    "reader_answers", _schema,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.Integer, nullable=False, index=True),
    sa.Column("reader", sa.String(255), nullable=False, index=True),
    sa.Column("case_index", sa.Integer, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("support_form", sa.String(32), nullable=False),
    sa.Column("first_answer", sa.String(16), nullable=False),
    sa.Column("first_management", sa.String(16), nullable=True),
    sa.Column("first_confidence", sa.Integer, nullable=True),
    sa.Column("first_seconds", sa.Float, nullable=False),
    sa.Column("first_at", sa.DateTime, nullable=False),
    sa.Column("final_answer", sa.String(16), nullable=True),
    sa.Column("final_management", sa.String(16), nullable=True),
    sa.Column("final_confidence", sa.Integer, nullable=True),
    sa.Column("final_seconds", sa.Float, nullable=True),
    sa.Column("final_at", sa.DateTime, nullable=True),
    sa.Column("ai_answer", sa.String(16), nullable=False),
    sa.Column("model_id", sa.String(255), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.UniqueConstraint("study_id", "reader", "case_index", name="uq_reader_answer"),
)
ANSWER_COLUMNS = tuple(column.name for column in _answers.columns)


class ReaderStudyStore:
    """Reader studies, readers' experience levels and their answers, in the feedback database.

    Args:
        url: SQLAlchemy database URL; defaults like ``FeedbackStore`` (``LESIONLIB_FEEDBACK_URL``,
            else ``feedback.db`` in the repository).
        timeout_s: how long one attempt waits for a locked database.

    Raises:
        ValueError: ``url`` is not a database URL.
        ReaderStudyError: the database cannot be opened or its tables cannot be created.
    """

    def __init__(self, url: str | None = None, *, timeout_s: float = 2.0):
        from lesionlib.feedback import DEFAULT_DATABASE_PATH, FEEDBACK_URL_ENV

        url = url or os.environ.get(FEEDBACK_URL_ENV) or f"sqlite:///{DEFAULT_DATABASE_PATH}"
        self._database = database.Database(url, timeout_s=timeout_s,
                                           title="feedback database",
                                           error_type=ReaderStudyError)
        self.location = self._database.location
        self._database.write(_schema.create_all, "create the reader-study tables")

    def close(self) -> None:
        self._database.close()

    def create(self, study: Study) -> Study:
        """Store a new study; returns it with its id.

        Raises:
            StudyInputError: a study of that name exists (names identify studies for readers).
        """
        if self.find(study.name) is not None:
            raise StudyInputError(f"A study named {study.name!r} exists already; choose "
                                  "another name.")
        row = {"name": study.name, "created_at": _now(), "created_by": study.created_by,
               "definition": json.dumps(_to_json(study))}
        new_id = self._database.write(
            lambda connection: connection.execute(_studies.insert().values(**row))
            .inserted_primary_key[0], f"save the study {study.name!r}")
        return dataclasses.replace(study, id=int(new_id), created_at=row["created_at"].isoformat())

    def find(self, name: str) -> Study | None:
        """The study of that name (spaces and case as typed do not matter), or ``None``."""
        wanted = " ".join(str(name or "").split()).casefold()
        return next((study for study in self.studies() if study.name.casefold() == wanted), None)

    def studies(self) -> list[Study]:
        """Every study, newest first."""
        rows = self._database.read(_studies.select().order_by(_studies.c.id.desc()),
                                   "list the reader studies")
        return [_from_row(row) for row in rows]

    def set_experience(self, reader: str, experience: str) -> None:
        """Record a reader's experience level (once; a second call changes nothing)."""
        if experience not in EXPERIENCE_LEVELS:
            raise StudyInputError(f"Experience: expected one of {', '.join(EXPERIENCE_LEVELS)}; "
                                  f"received {experience!r}.")

        def insert(connection):
            exists = connection.execute(sa.select(_profiles.c.reader).where(
                _profiles.c.reader == reader)).first()
            if exists is None:
                connection.execute(_profiles.insert().values(
                    reader=reader, experience=experience, created_at=_now()))
        self._database.write(insert, "save your experience level")

    def experience(self, reader: str) -> str | None:
        rows = self._database.read(sa.select(_profiles.c.experience).where(
            _profiles.c.reader == reader), "read your experience level")
        return rows[0]["experience"] if rows else None

    def experiences(self) -> dict[str, str]:
        rows = self._database.read(sa.select(_profiles), "read the readers' experience levels")
        return {row["reader"]: row["experience"] for row in rows}

    def record_first(self, study: Study, reader: str, case_index: int, position: int,
                     support_form: str, answer: str, management: str | None,
                     confidence: int | None, seconds: float) -> None:
        """Store the reader's answer on the image alone. A committed answer is never changed:
        committing the same case again (a double click, two tabs) keeps the first one. With no
        AI support the answer is also the final one."""
        _check_answer(answer, management, confidence)
        case = study.cases[case_index]
        now = _now()
        row = {"study_id": study.id, "reader": reader, "case_index": int(case_index),
               "position": int(position), "support_form": support_form, "first_answer": answer,
               "first_management": management, "first_confidence": confidence,
               "first_seconds": float(seconds), "first_at": now, "ai_answer": case.ai_answer,
               "model_id": study.model_id, "model_version": study.model_version}
        if support_form == "none":
            row.update(final_answer=answer, final_management=management,
                       final_confidence=confidence, final_seconds=0.0, final_at=now)

        def insert(connection):
            if connection.execute(sa.select(_answers.c.id).where(
                    *_same_answer(study.id, reader, case_index))).first() is None:
                connection.execute(_answers.insert().values(**row))
        self._database.write(insert, "save your first answer", row,
                             "Your answer was NOT saved: commit it again.")

    def record_final(self, study: Study, reader: str, case_index: int, answer: str,
                     management: str | None, confidence: int | None, seconds: float) -> None:
        """Store the reader's answer after AI support (once; a second commit changes nothing)."""
        _check_answer(answer, management, confidence)
        values = {"final_answer": answer, "final_management": management,
                  "final_confidence": confidence, "final_seconds": float(seconds),
                  "final_at": _now()}
        self._database.write(
            lambda connection: connection.execute(_answers.update().where(
                *_same_answer(study.id, reader, case_index),
                _answers.c.final_answer.is_(None)).values(**values)),
            "save your answer after AI support", values,
            "Your answer was NOT saved: commit it again.")

    def answers(self, study: Study, reader: str | None = None) -> pd.DataFrame:
        """The study's answers (one reader's when ``reader`` is given), ``ANSWER_COLUMNS``."""
        query = _answers.select().where(_answers.c.study_id == study.id)
        if reader is not None:
            query = query.where(_answers.c.reader == reader)
        rows = self._database.read(query.order_by(_answers.c.id), "read the study's answers")
        return pd.DataFrame([dict(row) for row in rows], columns=list(ANSWER_COLUMNS))


def _same_answer(study_id: int, reader: str, case_index: int) -> list:
    return [_answers.c.study_id == study_id, _answers.c.reader == reader,
            _answers.c.case_index == int(case_index)]


def _check_answer(answer, management, confidence) -> None:
    if answer not in CLASS_NAMES:
        raise StudyInputError(f"Diagnosis: expected one of {', '.join(CLASS_NAMES)}; received "
                              f"{answer!r}.")
    if management is not None and management not in MANAGEMENT:
        raise StudyInputError(f"Management: expected one of {', '.join(MANAGEMENT)}; received "
                              f"{management!r}.")
    if confidence is not None and confidence not in CONFIDENCE_LEVELS:
        raise StudyInputError(f"Confidence: expected 1 to 5; received {confidence!r}.")


def _to_json(study: Study) -> dict:
    data = dataclasses.asdict(study)
    data.pop("id")
    return data


def _from_row(row) -> Study:
    data = json.loads(row["definition"])
    data["cases"] = tuple(StudyCase(**case) for case in data["cases"])
    data["support_forms"] = tuple(data["support_forms"])
    data.update(id=int(row["id"]), created_at=row["created_at"].isoformat())
    return Study(**data)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def progress(study: Study, answers: pd.DataFrame, reader: str) -> dict:
    """Where a reader is: the next case of their plan and whether its first answer is in.

    Returns ``{"plan", "done", "next": (position, case index, form) or None, "awaiting_final"}``:
    ``awaiting_final`` is True when the next case's first answer is stored but not its final one.
    """
    plan = study.plan(reader)
    mine = answers[answers["reader"] == reader].set_index("case_index")
    for position, (index, form) in enumerate(plan):
        if index not in mine.index or pd.isna(mine.loc[index, "final_answer"]):
            return {"plan": plan, "done": position, "next": (position, index, form),
                    "awaiting_final": index in mine.index}
    return {"plan": plan, "done": len(plan), "next": None, "awaiting_final": False}
