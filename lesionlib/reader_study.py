"""Reader study: what the models do to the people who use them (the human-AI team).

An administrator creates a study: a name, a case list with reference diagnoses, the model, the
forms of AI support to compare, how they are assigned, and whether readers also give a management
decision and a confidence. The model's output on every case is computed once, at creation, and
stored with the study, so every reader sees the same AI answer. Each reader sees the cases in
their own seeded order; per case they commit a diagnosis on the image alone, then see their
assigned support and may revise. Both answers, the support form, the AI's answer and version and
the time of each step are stored in the feedback database (``lesionlib.database``: SQLite or
PostgreSQL, many readers at once).

``results`` reads a study out: balanced accuracy and melanoma sensitivity / specificity of the
reader before AI, after AI and of the AI alone, with 95% bootstrap intervals (cases resampled;
readers too when pooled), split by whether the AI was right, by support form and by experience;
switches (misled: right -> wrong; helped: wrong -> right); how often readers ended on the AI's
answer when it was wrong; melanomas reassured before and after. Motivated by Tschandl et al.
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
BOOTSTRAP_SAMPLES = 1000
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
                                           title="reader-study database",
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


# ----------------------------------------------------------------------------- results

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


def answer_table(study: Study, answers: pd.DataFrame, experiences: dict[str, str]) -> pd.DataFrame:
    """Completed answers (both steps in) joined with each case's reference and the AI's answer."""
    done = answers.dropna(subset=["final_answer"]).copy()
    cases = pd.DataFrame([dataclasses.asdict(case) for case in study.cases])
    if done.empty:
        return done.assign(reference=pd.Series(dtype=str), ai_right=pd.Series(dtype=bool),
                           ai_melanoma_flag=pd.Series(dtype=bool),
                           experience=pd.Series(dtype=str))
    done = done.merge(cases[["index", "reference", "ai_melanoma_flag"]], left_on="case_index",
                      right_on="index", how="left").drop(columns="index")
    done["ai_right"] = done["ai_answer"] == done["reference"]
    done["experience"] = done["reader"].map(experiences).fillna("not given")
    return done


def balanced_accuracy(reference, answer, weights=None) -> float:
    """Mean recall over the reference classes present (weighted counts when ``weights``)."""
    reference, answer = np.asarray(reference), np.asarray(answer)
    weights = np.ones(len(reference)) if weights is None else np.asarray(weights, dtype=float)
    recalls = []
    for name in CLASS_NAMES:
        of_class = (reference == name) * weights
        if of_class.sum() > 0:
            recalls.append(float((of_class * (answer == name)).sum() / of_class.sum()))
    return float(np.mean(recalls)) if recalls else float("nan")


def _sensitivity(reference, called_melanoma, weights) -> float:
    melanomas = (np.asarray(reference) == MELANOMA) * weights
    return float((melanomas * called_melanoma).sum() / melanomas.sum()) if melanomas.sum() \
        else float("nan")


def _specificity(reference, called_melanoma, weights) -> float:
    others = (np.asarray(reference) != MELANOMA) * weights
    return float((others * ~np.asarray(called_melanoma, bool)).sum() / others.sum()) \
        if others.sum() else float("nan")


METRICS = {  # name -> (label, function(table, weights) for reader before / after / AI)
    "balanced_accuracy": "balanced accuracy",
    "melanoma_sensitivity": "melanoma sensitivity",
    "melanoma_specificity": "melanoma specificity",
}
WHO = ("before", "after", "ai")


def _scores(table: pd.DataFrame, weights: np.ndarray) -> dict:
    reference = table["reference"].to_numpy()
    answers = {"before": table["first_answer"].to_numpy(),
               "after": table["final_answer"].to_numpy(), "ai": table["ai_answer"].to_numpy()}
    melanoma_calls = {"before": answers["before"] == MELANOMA,
                      "after": answers["after"] == MELANOMA,
                      "ai": table["ai_melanoma_flag"].to_numpy(bool)}
    scores = {}
    for who in WHO:
        scores[("balanced_accuracy", who)] = balanced_accuracy(reference, answers[who], weights)
        scores[("melanoma_sensitivity", who)] = _sensitivity(reference, melanoma_calls[who],
                                                             weights)
        scores[("melanoma_specificity", who)] = _specificity(reference, melanoma_calls[who],
                                                             weights)
    return scores


def score_with_intervals(table: pd.DataFrame, samples: int = BOOTSTRAP_SAMPLES,
                         seed: int = 0) -> pd.DataFrame:
    """Each metric for the reader before AI, after AI and the AI alone, with a 95% percentile
    bootstrap interval: cases resampled, and readers too when there are several (each answer
    weighted by how often its reader and its case were drawn).

    Returns one row per metric: ``metric``, then ``before``, ``before_low``, ``before_high``,
    ``after``..., ``ai``..., and ``answers``, ``cases``, ``readers``.
    """
    columns = ["metric", *[f"{who}{suffix}" for who in WHO for suffix in ("", "_low", "_high")],
               "answers", "cases", "readers"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    point = _scores(table, np.ones(len(table)))
    cases = np.sort(table["case_index"].unique())
    readers = np.sort(table["reader"].unique())
    case_position = np.searchsorted(cases, table["case_index"].to_numpy())
    reader_position = np.searchsorted(readers, table["reader"].to_numpy())
    rng = np.random.default_rng(seed)
    draws = {key: [] for key in point}
    for _ in range(samples):
        case_counts = np.bincount(rng.integers(len(cases), size=len(cases)),
                                  minlength=len(cases))
        reader_counts = (np.bincount(rng.integers(len(readers), size=len(readers)),
                                     minlength=len(readers)) if len(readers) > 1
                         else np.ones(1, dtype=int))
        weights = case_counts[case_position] * reader_counts[reader_position]
        if weights.sum() == 0:
            continue
        for key, value in _scores(table, weights).items():
            draws[key].append(value)
    rows = []
    for metric in METRICS:
        row = {"metric": METRICS[metric]}
        for who in WHO:
            values = np.array(draws[(metric, who)], dtype=float)
            values = values[~np.isnan(values)]
            row[who] = point[(metric, who)]
            row[f"{who}_low"], row[f"{who}_high"] = (
                (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
                if len(values) else (float("nan"), float("nan")))
        row.update(answers=len(table), cases=len(cases), readers=len(readers))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def switches(table: pd.DataFrame) -> pd.DataFrame:
    """Per support form: answers, changed answers, helped (wrong -> right), misled (right ->
    wrong), and with the AI wrong: how often the final answer was the AI's, and how often the
    reader switched to it."""
    rows = []
    for form, group in table.groupby("support_form", sort=True):
        first_right = group["first_answer"] == group["reference"]
        final_right = group["final_answer"] == group["reference"]
        ai_wrong = ~group["ai_right"]
        ended_on_ai = group["final_answer"] == group["ai_answer"]
        rows.append({
            "support_form": form, "answers": len(group),
            "changed": int((group["first_answer"] != group["final_answer"]).sum()),
            "helped": int((~first_right & final_right).sum()),
            "misled": int((first_right & ~final_right).sum()),
            "ai_wrong": int(ai_wrong.sum()),
            "followed_wrong_ai": int((ai_wrong & ended_on_ai).sum()),
            "switched_to_wrong_ai": int((ai_wrong & ended_on_ai
                                         & (group["first_answer"] != group["ai_answer"])).sum()),
        })
    return pd.DataFrame(rows, columns=["support_form", "answers", "changed", "helped", "misled",
                                       "ai_wrong", "followed_wrong_ai", "switched_to_wrong_ai"])


def melanoma_management(table: pd.DataFrame) -> dict:
    """Among reference melanomas with a management decision: how many the readers would have
    reassured (sent home) before and after AI support."""
    melanomas = table[(table["reference"] == MELANOMA) & table["first_management"].notna()]
    return {"melanomas": len(melanomas),
            "reassured_before": int((melanomas["first_management"] == "reassure").sum()),
            "reassured_after": int((melanomas["final_management"] == "reassure").sum())}


def results(study: Study, answers: pd.DataFrame, experiences: dict[str, str],
            samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict:
    """The whole read-out of a study (or of one reader, given only their answers).

    Returns ``{"table", "overall", "by_ai", "by_form", "by_experience", "switches",
    "management", "summary"}``: the answer table, score frames (see ``score_with_intervals``;
    the split ones have a ``group`` column), the switch counts, the melanoma management counts and
    a plain-language paragraph.
    """
    table = answer_table(study, answers, experiences)

    def split(column: str, names=None) -> pd.DataFrame:
        frames = []
        for value, group in table.groupby(column, sort=True):
            frame = score_with_intervals(group, samples, seed)
            frame.insert(0, "group", names.get(value, value) if names else value)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    read_out = {
        "table": table,
        "overall": score_with_intervals(table, samples, seed),
        "by_ai": split("ai_right", {True: "AI right", False: "AI wrong"}),
        "by_form": split("support_form", SUPPORT_FORMS),
        "by_experience": split("experience"),
        "switches": switches(table),
        "management": melanoma_management(table),
    }
    read_out["summary"] = summary(study, read_out)
    return read_out


def summary(study: Study, read_out: dict) -> str:
    """A plain-language paragraph of the read-out."""
    table, overall = read_out["table"], read_out["overall"]
    if table.empty:
        return "No case has been completed yet."
    accuracy = overall.iloc[0]
    moves = read_out["switches"]

    def interval(who: str) -> str:
        return (f"{accuracy[who]:.2f} (95% interval {accuracy[f'{who}_low']:.2f}-"
                f"{accuracy[f'{who}_high']:.2f})")

    readers = table["reader"].nunique()
    text = [f"{readers} reader{'s' if readers != 1 else ''} completed {len(table)} "
            f"case reading{'s' if len(table) != 1 else ''} of {table['case_index'].nunique()} "
            f"cases with {study.model_name} v{study.model_version}. Balanced accuracy (the mean "
            f"recall over the diagnoses) was {interval('before')} on the image alone and "
            f"{interval('after')} after AI support; the AI alone scored {interval('ai')} on the "
            "same cases."]
    by_ai = read_out["by_ai"]
    for group, words in (("AI wrong", "When the AI was wrong"), ("AI right",
                                                                  "When it was right")):
        rows = by_ai[(by_ai["group"] == group) & (by_ai["metric"] == "balanced accuracy")] \
            if not by_ai.empty else by_ai
        if not rows.empty:
            row = rows.iloc[0]
            text.append(f"{words}, readers' balanced accuracy went from {row['before']:.2f} to "
                        f"{row['after']:.2f} ({int(row['answers'])} readings).")
    helped, misled = int(moves["helped"].sum()), int(moves["misled"].sum())
    text.append(f"AI support turned {helped} wrong answer{'s' if helped != 1 else ''} right "
                f"and {misled} right answer{'s' if misled != 1 else ''} wrong.")
    wrong = int(moves["ai_wrong"].sum())
    if wrong:
        followed = int(moves["followed_wrong_ai"].sum())
        text.append(f"When the AI was wrong, readers ended on its answer in {followed} of "
                    f"{wrong} readings ({100 * followed / wrong:.0f}%), a measure of automation "
                    "bias.")
    management = read_out["management"]
    if management["melanomas"]:
        text.append(f"Of {management['melanomas']} melanoma readings with a management "
                    f"decision, {management['reassured_before']} would have been reassured "
                    f"before AI support and {management['reassured_after']} after.")
    text.append("Small studies give wide intervals: read the intervals, not only the figures.")
    return " ".join(text)


def export_csv(study: Study, table: pd.DataFrame) -> bytes:
    """Every completed answer as CSV, readers under pseudonyms (``Study.pseudonym``)."""
    columns = ["study", "reader", "experience", "case", "position", "support_form", "reference",
               "ai_answer", "ai_right", "first_answer", "first_management", "first_confidence",
               "first_seconds", "final_answer", "final_management", "final_confidence",
               "final_seconds", "model_id", "model_version"]
    if table.empty:
        return pd.DataFrame(columns=columns).to_csv(index=False).encode()
    frame = table.assign(study=study.name, reader=table["reader"].map(study.pseudonym),
                         case=table["case_index"] + 1, position=table["position"] + 1)
    return frame[columns].to_csv(index=False).encode()
