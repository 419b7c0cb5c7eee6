"""Reviewer feedback and the audit log, stored with SQLAlchemy Core in SQLite or PostgreSQL.

One ``FeedbackStore`` wraps one database (one SQLAlchemy engine, safe to share between threads,
e.g. through ``st.cache_resource``). SQLite is the default and runs in WAL mode with a busy
timeout, so several threads and processes can write to one file; several app servers share a
PostgreSQL database through a ``postgresql+psycopg://`` URL.

Nothing is ever deleted or rewritten. A reviewer who saves feedback again on the same case (same
``case_id``, reviewer, model and image) revises their review: the new record gets the next
``revision`` number and the earlier one is marked ``superseded_by`` the new record's id, so
``records()`` shows one current review per case while ``history()`` keeps every revision. Older
databases gain the two columns when a store opens them (``ALTER TABLE ... ADD COLUMN``; rows
already there become revision 1, current).

A failed write raises ``FeedbackStoreError`` and never loses a record silently: the caller still
holds the record and can offer to save it again.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from lesionlib import database, imaging

FEEDBACK_URL_ENV = "LESIONLIB_FEEDBACK_URL"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_PATH = REPO_ROOT / "feedback.db"
SOURCES = ("case_review", "error_browser")
AUDIT_EVENTS = ("sign-in", "sign-out", "feedback", "export", "denied", "sign-in-failed",
                "sign-in-locked", "approve-correction", "reject-correction", "retrain",
                "rollback", "sign-in-revoked")
CORRECTION_DECISIONS = ("approve", "reject")  # an administrator's verdict on a correction
MAX_NOTE_CHARS = 20_000
MAX_DETAIL_CHARS = 2_000
LOST_MESSAGE = ("The record was NOT saved; it has not been lost: keep it and try again, or ask an "
                "administrator to check the database.")

RECORD_COLUMNS = ("id", "created_at", "case_id", "source", "model_id", "model_version",
                  "predicted_class", "agree", "corrected_class", "note", "reviewer",
                  "image_sha256", "has_image", "revision", "superseded_by")
_TEXT_COLUMNS = ("case_id", "source", "model_id", "model_version", "predicted_class",
                 "corrected_class", "note", "reviewer", "image_sha256")
AUDIT_COLUMNS = ("id", "created_at", "event", "user", "detail")
DECISION_COLUMNS = ("id", "created_at", "record_id", "decision", "admin", "note")

_schema = sa.MetaData()
_feedback = sa.Table(
    "feedback", _schema,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime, nullable=False, index=True),  # naive UTC
    sa.Column("case_id", sa.String(255), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("model_id", sa.String(255), nullable=False, index=True),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("predicted_class", sa.String(64), nullable=False),
    sa.Column("agree", sa.Boolean, nullable=False),
    sa.Column("corrected_class", sa.String(64), nullable=True),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("reviewer", sa.String(255), nullable=False, index=True),
    sa.Column("image_sha256", sa.String(64), nullable=True),
    sa.Column("image_png", sa.LargeBinary, nullable=True),
    # revisions (added in schema 2; see _migrate): 1, 2, ... per review, and the record that
    # replaced this one (NULL while it is the reviewer's current review of the case)
    sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
    sa.Column("superseded_by", sa.Integer, nullable=True, index=True),
)
_MIGRATIONS = {  # column -> DDL adding it to a feedback table created before it existed
    "revision": "ALTER TABLE feedback ADD COLUMN revision INTEGER NOT NULL DEFAULT 1",
    "superseded_by": "ALTER TABLE feedback ADD COLUMN superseded_by INTEGER",
}
_audit = sa.Table(
    "audit_log", _schema,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime, nullable=False),  # naive UTC
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("username", sa.String(255), nullable=False),  # "user" is reserved in PostgreSQL
    sa.Column("detail", sa.Text, nullable=False),
)
# Administrators' verdicts on corrections (append-only: the latest verdict on a record counts).
_decisions = sa.Table(
    "correction_decisions", _schema,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime, nullable=False),  # naive UTC
    sa.Column("record_id", sa.Integer, nullable=False, index=True),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("admin", sa.String(255), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
)


@dataclasses.dataclass(frozen=True)
class FeedbackRecord:
    """One reviewer's verdict on one model prediction.

    Attributes:
        case_id: what was reviewed: a sample file name, an upload's ``sha256[:12]`` or a dataset
            ``image_id``.
        source: the page it came from, one of ``SOURCES``.
        model_id: the model that made the prediction, e.g. ``"efficientnetb0.isic-v1"``.
        model_version: the model card's version.
        predicted_class: the class the model predicted.
        agree: whether the reviewer agrees with the prediction.
        corrected_class: the reviewer's class when they disagree (``None`` if unsure or agreeing).
        note: free text from the reviewer (may be empty).
        reviewer: who reviewed; the signed-in user, ``"local"`` when sign-in is off.
        image_sha256: SHA-256 (64 hex digits) of the uploaded file, when there was one.
        image_png: the reviewed upload as PNG. The store re-checks it and strips any metadata
            (EXIF, text chunks, ICC profiles) before writing it.
        created_at: when the feedback was given; the store sets it (UTC) when ``None``.
    """

    case_id: str
    source: str
    model_id: str
    model_version: str
    predicted_class: str
    agree: bool
    corrected_class: str | None
    note: str
    reviewer: str
    image_sha256: str | None = None
    image_png: bytes | None = None
    created_at: datetime | None = None


@dataclasses.dataclass(frozen=True)
class SavedFeedback:
    """What ``FeedbackStore.save`` wrote: the new record's id, its revision number (1 for a
    first review) and the ids of the records it superseded."""

    record_id: int
    revision: int
    superseded: tuple[int, ...] = ()


class FeedbackStoreError(database.DatabaseError):
    """The feedback database could not be opened, read or written; the message says where and why.

    Attributes:
        record: the ``FeedbackRecord`` that was not saved (``None`` for other operations). It was
            not written; the caller still has it and can save it again.
    """


class FeedbackStore:
    """Store of reviewer feedback (revised reviews kept as revisions) and of the audit log.

    Args:
        url: SQLAlchemy database URL, e.g. ``"sqlite:////srv/lesion/feedback.db"`` or
            ``"postgresql+psycopg://user:password@db-host/lesion"``. Defaults to the environment
            variable ``LESIONLIB_FEEDBACK_URL``, else ``sqlite:///<repo>/feedback.db``.
        timeout_s: how long one attempt waits for a locked database (SQLite busy timeout) or for a
            connection (PostgreSQL). Defaults to ``2.0``.

    Raises:
        ValueError: ``url`` is not a database URL.
        FeedbackStoreError: the database cannot be opened or its tables cannot be created.
    """

    def __init__(self, url: str | None = None, *, timeout_s: float = 2.0):
        url = url or os.environ.get(FEEDBACK_URL_ENV) or f"sqlite:///{DEFAULT_DATABASE_PATH}"
        self._database = database.Database(url, timeout_s=timeout_s, title="feedback database",
                                           error_type=FeedbackStoreError)
        self.location = self._database.location
        self._write(_create_and_migrate, "open the database and create its tables")

    def __repr__(self) -> str:
        return f"FeedbackStore({self.location!r})"

    def close(self) -> None:
        """Close the database connections (the store cannot be used afterwards)."""
        self._database.close()

    def add(self, record: FeedbackRecord) -> int:
        """Save one feedback record and return its id (see ``save``, which says more)."""
        return self.save(record).record_id

    def save(self, record: FeedbackRecord) -> SavedFeedback:
        """Save one feedback record; a second review of the same case revises the first.

        The reviewer's current record on the same ``case_id``, ``model_id`` and
        ``image_sha256`` (if any) is marked superseded by the new one, in the same transaction.

        Raises:
            ValueError: a field of ``record`` is missing, of the wrong type, or ``image_png`` is
                not a readable image.
            FeedbackStoreError: the database stayed locked or failed; nothing was saved and the
                error's ``record`` attribute holds the record.
        """
        _validate_record(record)
        row = dataclasses.asdict(record)
        if record.image_png is not None:
            row["image_png"] = _metadata_free_png(record.image_png, record.case_id)
        row["created_at"] = _utc_naive(record.created_at or datetime.now(timezone.utc))
        row["agree"] = bool(record.agree)

        def insert(connection) -> SavedFeedback:
            same_review = _same_review(record)
            _lock_review(connection, record)  # another process revising it waits here
            earlier = connection.execute(
                sa.select(_feedback.c.id, _feedback.c.revision)
                .where(*same_review, _feedback.c.superseded_by.is_(None))).all()
            row["revision"] = 1 + max((revision for _, revision in earlier), default=0)
            result = connection.execute(_feedback.insert().values(**row))
            record_id = int(result.inserted_primary_key[0])
            if earlier:
                connection.execute(_feedback.update().where(
                    _feedback.c.id.in_([earlier_id for earlier_id, _ in earlier]))
                    .values(superseded_by=record_id))
            return SavedFeedback(record_id, row["revision"],
                                 tuple(earlier_id for earlier_id, _ in earlier))

        return self._write(insert, f"save the feedback on case {record.case_id!r}", record)

    def history(self, case_id: str, reviewer: str, model_id: str | None = None) -> pd.DataFrame:
        """Every revision of a reviewer's feedback on a case, oldest first (``RECORD_COLUMNS``).

        Raises:
            FeedbackStoreError: the database cannot be read.
        """
        conditions = [_feedback.c.case_id == case_id, _feedback.c.reviewer == reviewer]
        if model_id is not None:
            conditions.append(_feedback.c.model_id == model_id)
        return self._frame(sa.and_(*conditions), "read the history of a review")

    def records(self, reviewer: str | None = None, model_id: str | None = None,
                agree: bool | None = None, source: str | None = None,
                since: datetime | None = None, include_superseded: bool = False) -> pd.DataFrame:
        """Feedback records, oldest first, as a DataFrame with the ``RECORD_COLUMNS``.

        Only current reviews, unless ``include_superseded``: a revised review appears once, as
        its latest revision. The image bytes are left out; ``has_image`` says whether
        ``image(id)`` returns one. ``created_at`` is timezone-aware UTC.

        Args:
            reviewer: only this reviewer's records.
            model_id: only records on this model.
            agree: only agreeing (``True``) or disagreeing (``False``) records.
            source: only records from this page, one of ``SOURCES``.
            since: only records created at or after this time (naive means UTC).
            include_superseded: also the earlier revisions of revised reviews.

        Raises:
            ValueError: ``source`` is unknown or ``since`` is not a datetime.
            FeedbackStoreError: the database cannot be read.
        """
        conditions = _filters(reviewer, model_id, agree, source, since)
        if not include_superseded:
            conditions.append(_feedback.c.superseded_by.is_(None))
        return self._frame(sa.and_(sa.true(), *conditions), "read the feedback records")

    def _frame(self, condition, what: str) -> pd.DataFrame:
        query = sa.select(*[column for column in _feedback.c if column.name != "image_png"],
                          _feedback.c.image_png.is_not(None).label("has_image"))
        rows = self._read(query.where(condition).order_by(_feedback.c.id), what)
        frame = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        frame["superseded_by"] = frame["superseded_by"].astype("Int64")
        return frame.astype({"id": "int64", "agree": "bool", "has_image": "bool",
                             "revision": "int64"})

    def image(self, record_id: int) -> bytes | None:
        """The metadata-free PNG stored with a record, or ``None`` if it has no image.

        Raises:
            KeyError: there is no record with this id.
            FeedbackStoreError: the database cannot be read.
        """
        if isinstance(record_id, bool) or not isinstance(record_id, (int, np.integer)):
            raise ValueError(f"record_id must be an integer; received {record_id!r}.")
        query = sa.select(_feedback.c.image_png).where(_feedback.c.id == int(record_id))
        rows = self._read(query, f"read the image of feedback record {record_id}")
        if not rows:
            raise KeyError(f"No feedback record with id {record_id} in {self.location}.")
        image = rows[0]["image_png"]
        return None if image is None else bytes(image)

    def export_csv(self, reviewer: str | None = None, model_id: str | None = None,
                   agree: bool | None = None, source: str | None = None,
                   since: datetime | None = None, include_superseded: bool = False) -> bytes:
        """The filtered records (see ``records``) as UTF-8 CSV, safe to open in a spreadsheet.

        Text cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``,
        ``@``, tab or carriage return) are prefixed with ``'``.
        """
        frame = self.records(reviewer=reviewer, model_id=model_id, agree=agree, source=source,
                             since=since, include_superseded=include_superseded)
        frame["created_at"] = frame["created_at"].map(lambda value: value.isoformat())
        for column in _TEXT_COLUMNS:
            frame[column] = frame[column].map(_defuse_formula)
        return frame.to_csv(index=False).encode("utf-8")

    def audit(self, event: str, user: str, detail: str = "") -> None:
        """Append an event to the audit log.

        Args:
            event: one of ``AUDIT_EVENTS``.
            user: who did it.
            detail: free text, e.g. the page a user was denied or the filters of an export.

        Raises:
            ValueError: ``event`` is unknown or ``user`` is empty.
            FeedbackStoreError: the database could not be written.
        """
        if event not in AUDIT_EVENTS:
            raise ValueError(f"Unknown audit event {event!r}{_did_you_mean(event, AUDIT_EVENTS)}"
                             f"; expected one of {AUDIT_EVENTS}.")
        _check_text("user", user, required=True)
        _check_text("detail", detail, limit=MAX_DETAIL_CHARS)
        row = {"created_at": _utc_naive(datetime.now(timezone.utc)), "event": event,
               "username": user, "detail": detail}
        self._write(lambda connection: connection.execute(_audit.insert().values(**row)),
                    f"record the audit event {event!r} for {user!r}")

    def decide_correction(self, record_id: int, decision: str, admin: str,
                          note: str = "") -> None:
        """Record an administrator's verdict on a reviewer's correction, and audit it.

        Only a verdict of ``"approve"`` lets a correction alone into retraining
        (``lesionlib.corrections``); a later verdict replaces an earlier one. Callers check that
        ``admin`` is an administrator (``app.auth``).

        Raises:
            ValueError: ``decision`` is unknown, the record is not a correction (it agrees or
                names no corrected class), or ``admin`` wrote the correction: nobody approves
                their own.
            KeyError: there is no record with this id.
            FeedbackStoreError: the database cannot be read or written.
        """
        _check_choice("decision", decision, CORRECTION_DECISIONS)
        _check_text("admin", admin, required=True, limit=255)
        _check_text("note", note, limit=MAX_DETAIL_CHARS)
        record = self._correction(record_id)
        if decision == "approve" and record["reviewer"] == admin:
            raise ValueError(f"Record {record_id} is {admin!r}'s own correction: another "
                             "administrator must approve it (one person alone never changes "
                             "a model).")
        row = {"created_at": _utc_naive(datetime.now(timezone.utc)),
               "record_id": int(record_id), "decision": decision, "admin": admin,
               "note": note}
        self._write(lambda connection: connection.execute(_decisions.insert().values(**row)),
                    f"record the {decision} of correction {record_id}")
        self.audit(f"{decision}-correction", admin,
                   f"record {record_id}: {record['corrected_class']} for case "
                   f"{record['case_id']!r} by {record['reviewer']!r}" + (f"; {note}" if note
                                                                         else ""))

    def correction_decisions(self) -> pd.DataFrame:
        """Every verdict on corrections, oldest first, with the ``DECISION_COLUMNS``."""
        query = sa.select(*_decisions.c).order_by(_decisions.c.id)
        rows = self._read(query, "read the correction verdicts")
        frame = pd.DataFrame(rows, columns=list(DECISION_COLUMNS))
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        return frame.astype({"id": "int64", "record_id": "int64"})

    def _correction(self, record_id: int) -> dict:
        if isinstance(record_id, bool) or not isinstance(record_id, (int, np.integer)):
            raise ValueError(f"record_id must be an integer; received {record_id!r}.")
        query = sa.select(_feedback.c.case_id, _feedback.c.agree, _feedback.c.corrected_class,
                          _feedback.c.reviewer).where(_feedback.c.id == int(record_id))
        rows = self._read(query, f"read feedback record {record_id}")
        if not rows:
            raise KeyError(f"No feedback record with id {record_id} in {self.location}.")
        record = dict(rows[0])
        if record["agree"] or not record["corrected_class"]:
            raise ValueError(f"Record {record_id} is not a correction (the reviewer agreed or "
                             "named no corrected class); only corrections are approved.")
        return record

    def last_event_at(self, event: str, username: str) -> datetime | None:
        """When ``username`` last had an audit ``event`` (UTC), or ``None`` if never.

        Raises:
            FeedbackStoreError: the database could not be read.
        """
        query = sa.select(sa.func.max(_audit.c.created_at).label("latest")).where(
            _audit.c.event == event, _audit.c.username == username)
        rows = self._read(query, "read the audit log")
        latest = rows[0]["latest"] if rows else None
        if latest is None:
            return None
        latest = pd.Timestamp(latest)
        return (latest.tz_localize("UTC") if latest.tzinfo is None else latest).to_pydatetime()

    def audit_log(self, limit: int = 500) -> pd.DataFrame:
        """The latest audit events, newest first, with the ``AUDIT_COLUMNS``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer; received {limit!r}.")
        query = sa.select(_audit.c.id, _audit.c.created_at, _audit.c.event,
                          _audit.c.username.label("user"), _audit.c.detail)
        rows = self._read(query.order_by(_audit.c.id.desc()).limit(limit), "read the audit log")
        frame = pd.DataFrame(rows, columns=list(AUDIT_COLUMNS))
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        return frame.astype({"id": "int64"})

    def _write(self, operation, what: str, record: FeedbackRecord | None = None):
        """Run ``operation(connection)`` in a transaction, retrying while the database is busy."""
        return self._database.write(operation, what, record, LOST_MESSAGE)

    def _read(self, query, what: str) -> list:
        return self._database.read(query, what)


def _create_and_migrate(connection) -> None:
    """Create missing tables, and add the columns a feedback table from an older version lacks."""
    _schema.create_all(connection)
    present = {column["name"] for column in sa.inspect(connection).get_columns("feedback")}
    for column, statement in _MIGRATIONS.items():
        if column not in present:
            connection.execute(sa.text(statement))
    if "superseded_by" not in present:
        # Raw DDL: an sa.Index built on the column would attach itself to the table for good,
        # and every later create_all on a fresh database (same process) would emit it twice.
        connection.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_feedback_superseded_by "
                                   "ON feedback (superseded_by)"))


def _lock_review(connection, record: FeedbackRecord) -> None:
    """Serialise revisions of one review across processes, before its current revision is read.

    Without it two servers revising the same review at once both read revision 1 as current and
    both wrote a "current" revision 2. PostgreSQL: a transaction-scoped advisory lock on the
    review's key. SQLite: a no-op write takes the database's write lock now (the default
    deferred transaction would take it only at the insert, after the read).
    """
    if connection.dialect.name == "postgresql":
        key = hashlib.sha256("\x1f".join((record.case_id, record.model_id, record.reviewer,
                                            record.image_sha256 or "")).encode()).digest()
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                           {"key": int.from_bytes(key[:8], "big", signed=True)})
    elif connection.dialect.name == "sqlite":
        connection.execute(_feedback.update().where(sa.false()).values(revision=0))


def _same_review(record: FeedbackRecord) -> list:
    """Conditions matching a reviewer's records on the same case, model and image."""
    sha = record.image_sha256
    return [_feedback.c.case_id == record.case_id, _feedback.c.reviewer == record.reviewer,
            _feedback.c.model_id == record.model_id,
            _feedback.c.image_sha256.is_(None) if sha is None else _feedback.c.image_sha256 == sha]


def _filters(reviewer, model_id, agree, source, since) -> list:
    conditions = []
    if reviewer is not None:
        conditions.append(_feedback.c.reviewer == reviewer)
    if model_id is not None:
        conditions.append(_feedback.c.model_id == model_id)
    if agree is not None:
        conditions.append(_feedback.c.agree == bool(agree))
    if source is not None:
        _check_choice("source", source, SOURCES)
        conditions.append(_feedback.c.source == source)
    if since is not None:
        if not isinstance(since, datetime):
            raise ValueError(f"since must be a datetime; received {type(since).__name__}.")
        conditions.append(_feedback.c.created_at >= _utc_naive(since))
    return conditions


def _utc_naive(moment: datetime) -> datetime:
    """Naive UTC, the form stored in both databases (a naive input is taken as UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _validate_record(record: FeedbackRecord) -> None:
    if not isinstance(record, FeedbackRecord):
        raise ValueError(f"Expected a FeedbackRecord; received {type(record).__name__}.")
    for field in ("case_id", "model_id", "model_version", "predicted_class", "reviewer"):
        _check_text(field, getattr(record, field), required=True, limit=255)
    _check_choice("source", record.source, SOURCES)
    if not isinstance(record.agree, (bool, np.bool_)):
        raise ValueError(f"FeedbackRecord.agree must be True or False; received "
                         f"{record.agree!r}.")
    if record.corrected_class is not None:
        _check_text("corrected_class", record.corrected_class, required=True, limit=64)
    _check_text("note", record.note, limit=MAX_NOTE_CHARS)
    sha = record.image_sha256
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64
                            or any(char not in "0123456789abcdef" for char in sha)):
        raise ValueError(f"FeedbackRecord.image_sha256 must be 64 lowercase hex digits "
                         f"(hashlib.sha256(...).hexdigest()); received {sha!r}.")
    if record.image_png is not None and not isinstance(record.image_png, (bytes, bytearray)):
        raise ValueError(f"FeedbackRecord.image_png must be bytes or None; received "
                         f"{type(record.image_png).__name__}.")
    if record.created_at is not None and not isinstance(record.created_at, datetime):
        raise ValueError(f"FeedbackRecord.created_at must be a datetime or None; received "
                         f"{type(record.created_at).__name__}.")


def _check_text(field: str, value, required: bool = False, limit: int | None = None) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string; received {type(value).__name__}.")
    if required and not value.strip():
        raise ValueError(f"{field} must not be empty.")
    if limit is not None and len(value) > limit:
        raise ValueError(f"{field} is {len(value):,} characters long; at most {limit:,} are "
                         "accepted.")


def _check_choice(field: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{field} must be one of {choices}; received {value!r}"
                         f"{_did_you_mean(value, choices)}.")


def _did_you_mean(value, choices) -> str:
    matches = difflib.get_close_matches(str(value), choices, n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PIXEL_CHUNKS = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}


def _metadata_free_png(data: bytes, case_id: str) -> bytes:
    """Check that ``data`` decodes as an image; re-encode it unless it is a bare pixel-only PNG."""
    data = bytes(data)
    try:
        pixels = imaging.load_image(data, name=f"image of case {case_id!r}")
    except imaging.ImageLoadError as error:
        raise ValueError(f"FeedbackRecord.image_png is not a usable image: {error}") from None
    return data if _is_bare_png(data) else imaging.strip_metadata(pixels)


def _is_bare_png(data: bytes) -> bool:
    """True for a PNG holding only pixel chunks and nothing after IEND (no EXIF, text, ICC)."""
    if not data.startswith(_PNG_SIGNATURE):
        return False
    position = len(_PNG_SIGNATURE)
    while position + 12 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        if kind not in _PIXEL_CHUNKS:
            return False
        position += 12 + length
        if kind == b"IEND":
            return position == len(data)
    return False


def _defuse_formula(value):
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
