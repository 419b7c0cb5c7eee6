"""FeedbackStore on SQLite and on a real throwaway PostgreSQL server."""

from __future__ import annotations

import concurrent.futures
import glob
import io
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlib import feedback, imaging
from lesionlib.feedback import FeedbackRecord, FeedbackStore, FeedbackStoreError

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_USER = "lesion"


def make_record(case_id: str = "ISIC_0000001.jpg", **changes) -> FeedbackRecord:
    fields = dict(case_id=case_id, source="case_review", model_id="efficientnetb0.isic-v1",
                  model_version="1.0.0", predicted_class="melanoma", agree=False,
                  corrected_class="nevus", note="border looks regular", reviewer="alice")
    fields.update(changes)
    return FeedbackRecord(**fields)


# ---------------------------------------------------------------- a throwaway PostgreSQL server

def _postgres_bin_dir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb")).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """initdb + pg_ctl in a temporary folder, as the 'postgres' user when the tests run as root."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="lesionlib-pg-"))  # not under pytest's 0700 dir
        self.data = self.base / "data"
        self.port = _free_port()
        self.run_as = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.base)
                pytest.skip("running as root and there is no 'postgres' user to run the "
                            "PostgreSQL server as (the server refuses to run as root)")
            os.chown(self.base, account.pw_uid, account.pw_gid)
            self.run_as = dict(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
        self._run("initdb", "-D", self.data, "-U", PG_USER, "--auth=trust", "-E", "UTF8",
                  "--no-locale")
        self.start()
        self.database_count = 0

    def _run(self, program: str, *arguments) -> None:
        command = [str(self.bin_dir / program), *map(str, arguments)]
        result = subprocess.run(command, cwd=self.base, capture_output=True, text=True,
                                timeout=120, **self.run_as)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", self.data, "-l", self.base / "server.log", "-w", "-t", "60",
                  "-o", options, "start")

    def restart(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        self.start()

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def new_database_url(self) -> str:
        import psycopg

        self.database_count += 1
        name = f"feedback_{self.database_count}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        # trust authentication ignores the password; it is here to check that it is redacted
        return f"postgresql+psycopg://{PG_USER}:s3cret-pw@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="module")
def postgres_server():
    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found under "
                    "/usr/lib/postgresql/*/bin or on PATH; install the Debian package "
                    "'postgresql' to run the PostgreSQL tests")
    pytest.importorskip("psycopg", reason="psycopg[binary] is needed for the PostgreSQL tests")
    server = PostgresServer(bin_dir)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.db'}"
    return request.getfixturevalue("postgres_server").new_database_url()


# ------------------------------------------------------------------------ on both databases

def test_round_trip(database_url):
    store = FeedbackStore(database_url)
    record = make_record(note="unicode ✓ and 'quotes'", corrected_class=None)
    record_id = store.add(record)
    frame = store.records()
    assert list(frame.columns) == list(feedback.RECORD_COLUMNS)
    assert "image_png" not in frame.columns
    row = frame.iloc[0]
    assert row["id"] == record_id
    for field in ("case_id", "source", "model_id", "model_version", "predicted_class", "note",
                  "reviewer"):
        assert row[field] == getattr(record, field)
    assert not row["agree"] and pd.isna(row["corrected_class"]) and not row["has_image"]
    assert frame["agree"].dtype == bool and frame["has_image"].dtype == bool
    age = datetime.now(timezone.utc) - row["created_at"].to_pydatetime()
    assert timedelta(0) <= age < timedelta(minutes=1)  # set by the store, in UTC
    assert store.image(record_id) is None
    with pytest.raises(KeyError, match="No feedback record with id 999"):
        store.image(999)
    store.close()


def test_records_survive_a_restart(database_url, request):
    """Records written by a process that then dies are all read by a new store."""
    script = textwrap.dedent(f"""
        import os
        from lesionlib.feedback import FeedbackRecord, FeedbackStore
        store = FeedbackStore({database_url!r})
        for index in range(50):
            store.add(FeedbackRecord(f"case-{{index}}", "error_browser", "m.a", "1", "nevus",
                                     True, None, "", "bob"))
        store.audit("feedback", "bob", "50 records")
        os._exit(0)  # no clean shutdown: only committed data may survive
    """)
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    subprocess.run([sys.executable, "-c", script], check=True, env=environment, timeout=120)
    if "postgresql" in database_url:
        request.getfixturevalue("postgres_server").restart()
    store = FeedbackStore(database_url)
    frame = store.records()
    assert list(frame["case_id"]) == [f"case-{index}" for index in range(50)]
    assert store.audit_log()["detail"].tolist() == ["50 records"]
    store.close()


def test_eight_threads_writing_200_records_each_all_land(database_url):
    store = FeedbackStore(database_url)

    def write(thread: int) -> list[int]:
        return [store.add(make_record(f"t{thread}-{index}", reviewer=f"reviewer{thread}"))
                for index in range(200)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        reading = pool.submit(lambda: [len(store.records()) for _ in range(5)])
        ids = [record_id for chunk in pool.map(write, range(8)) for record_id in chunk]
        reading.result()  # reading while others write does not fail
    assert len(ids) == len(set(ids)) == 1600
    frame = store.records()
    assert len(frame) == 1600
    assert frame.groupby("reviewer").size().to_dict() == {f"reviewer{t}": 200 for t in range(8)}
    assert set(frame["case_id"]) == {f"t{t}-{i}" for t in range(8) for i in range(200)}
    store.close()


def test_filters(database_url):
    store = FeedbackStore(database_url)
    old = datetime(2024, 1, 1, tzinfo=timezone.utc)
    store.add(make_record("a", reviewer="alice", agree=True, corrected_class=None,
                          created_at=old))
    store.add(make_record("b", reviewer="bob", model_id="resnet50.isic-v1"))
    store.add(make_record("c", reviewer="bob", source="error_browser"))
    assert store.records(reviewer="bob")["case_id"].tolist() == ["b", "c"]
    assert store.records(model_id="resnet50.isic-v1")["case_id"].tolist() == ["b"]
    assert store.records(agree=True)["case_id"].tolist() == ["a"]
    assert store.records(agree=False)["case_id"].tolist() == ["b", "c"]
    assert store.records(source="error_browser")["case_id"].tolist() == ["c"]
    assert store.records(since=datetime(2025, 1, 1, tzinfo=timezone.utc))["case_id"].tolist() \
        == ["b", "c"]
    assert store.records(since=datetime(2023, 12, 31, 23, 0))["case_id"].tolist() \
        == ["a", "b", "c"]  # naive means UTC
    assert store.records(reviewer="bob", source="case_review")["case_id"].tolist() == ["b"]
    assert store.records()["created_at"].iloc[0] == pd.Timestamp(old)
    assert store.records(reviewer="nobody").empty
    with pytest.raises(ValueError, match="did you mean 'error_browser'"):
        store.records(source="error-browser")
    store.close()


def test_export_csv_is_filtered_and_safe_for_spreadsheets(database_url):
    store = FeedbackStore(database_url)
    store.add(make_record("a", note="=HYPERLINK(\"http://evil\")", reviewer="alice"))
    store.add(make_record("b", note="fine, really", reviewer="bob"))
    exported = pd.read_csv(io.BytesIO(store.export_csv(reviewer="alice")))
    assert exported["case_id"].tolist() == ["a"]
    assert exported["note"].tolist() == ["'=HYPERLINK(\"http://evil\")"]
    everything = pd.read_csv(io.BytesIO(store.export_csv()))
    assert list(everything.columns) == list(feedback.RECORD_COLUMNS)
    assert everything["note"].tolist()[1] == "fine, really"
    store.close()


def _jpeg_with_exif() -> tuple[bytes, np.ndarray]:
    """A 64 x 48 JPEG with camera, GPS-like text and orientation 6 in its EXIF block."""
    pixels = np.zeros((48, 64, 3), dtype=np.uint8)
    pixels[:, :32] = (220, 30, 30)
    exif = Image.Exif()
    exif[0x010F] = "SecretCamMaker"  # Make
    exif[0x0131] = "patient-name-in-software-tag"  # Software
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    return buffer.getvalue(), pixels


def _assert_metadata_free(png: bytes) -> None:
    assert png.startswith(b"\x89PNG")
    assert b"SecretCamMaker" not in png and b"patient-name" not in png
    assert feedback._is_bare_png(png)
    with Image.open(io.BytesIO(png)) as stored:
        assert stored.format == "PNG"
        assert len(stored.getexif()) == 0
        assert not {"exif", "icc_profile", "Software"} & set(stored.info)


def test_stored_images_have_no_exif(database_url):
    jpeg, _ = _jpeg_with_exif()
    with Image.open(io.BytesIO(jpeg)) as original:
        assert original.getexif()[0x010F] == "SecretCamMaker"  # the fixture really has EXIF
    store = FeedbackStore(database_url)
    decoded = imaging.load_image(jpeg)
    as_the_app_stores_it = store.add(make_record(
        "upload-1", image_png=imaging.strip_metadata(decoded), image_sha256="ab" * 32))
    raw_jpeg = store.add(make_record("upload-2", image_png=jpeg))  # re-checked in add()
    png_exif = Image.Exif()
    png_exif[0x010F] = "SecretCamMaker"
    png_with_exif = io.BytesIO()
    Image.fromarray(decoded).save(png_with_exif, format="PNG", exif=png_exif.tobytes())
    assert b"SecretCamMaker" in png_with_exif.getvalue()
    png_with_exif_id = store.add(make_record("upload-3", image_png=png_with_exif.getvalue()))
    frame = store.records()
    assert frame["has_image"].tolist() == [True, True, True]
    assert frame["image_sha256"].tolist()[0] == "ab" * 32
    for record_id in (as_the_app_stores_it, raw_jpeg, png_with_exif_id):
        png = store.image(record_id)
        _assert_metadata_free(png)
        with Image.open(io.BytesIO(png)) as stored:
            assert stored.size == (48, 64)  # orientation applied to the pixels, tag dropped
    store.close()


def test_audit_log(database_url):
    store = FeedbackStore(database_url)
    store.audit("sign-in", "alice")
    store.audit("export", "alice", "reviewer=bob")
    store.audit("denied", "bob", "model administration")
    log = store.audit_log()
    assert list(log.columns) == list(feedback.AUDIT_COLUMNS)
    assert log["event"].tolist() == ["denied", "export", "sign-in"]  # newest first
    assert log["user"].tolist() == ["bob", "alice", "alice"]
    assert log["detail"].tolist()[:2] == ["model administration", "reviewer=bob"]
    assert store.audit_log(limit=1)["event"].tolist() == ["denied"]
    with pytest.raises(ValueError, match="did you mean 'sign-out'"):
        store.audit("signout", "alice")
    with pytest.raises(ValueError, match="user must not be empty"):
        store.audit("sign-in", " ")
    with pytest.raises(ValueError, match="positive integer"):
        store.audit_log(limit=0)
    store.close()


# ----------------------------------------------------------------------------- SQLite only

def test_default_url_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(feedback.FEEDBACK_URL_ENV, f"sqlite:///{tmp_path / 'from-env.db'}")
    store = FeedbackStore()
    store.add(make_record())
    assert (tmp_path / "from-env.db").is_file()
    assert str(tmp_path / "from-env.db") in store.location
    store.close()
    monkeypatch.delenv(feedback.FEEDBACK_URL_ENV)
    assert feedback.DEFAULT_DATABASE_PATH == REPO_ROOT / "feedback.db"


def test_sqlite_runs_in_wal_mode(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'wal.db'}")
    store.add(make_record())
    with sqlite3.connect(tmp_path / "wal.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_locked_database_raises_a_clear_error_and_keeps_the_record(tmp_path):
    path = tmp_path / "locked.db"
    store = FeedbackStore(f"sqlite:///{path}", timeout_s=0.2)
    store.add(make_record("before"))
    holder = sqlite3.connect(path, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    record = make_record("while-locked")
    try:
        with pytest.raises(FeedbackStoreError) as caught:
            store.add(record)
        message = str(caught.value)
        assert "locked" in message and str(path) in message
        assert "NOT saved" in message and "3 attempts" in message
        assert caught.value.record is record
        with pytest.raises(FeedbackStoreError, match="audit event 'sign-in'"):
            store.audit("sign-in", "alice")
    finally:
        holder.rollback()
        holder.close()
    store.add(record)  # the store still works once the lock is gone
    assert store.records()["case_id"].tolist() == ["before", "while-locked"]
    store.close()


def test_corrupt_file_raises_a_clear_error(tmp_path):
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not an SQLite database " * 200)
    with pytest.raises(FeedbackStoreError) as caught:
        FeedbackStore(f"sqlite:///{path}")
    message = str(caught.value)
    assert str(path) in message and "not a valid SQLite database" in message


def test_damaged_database_raises_on_read(tmp_path):
    path = tmp_path / "damaged.db"
    store = FeedbackStore(f"sqlite:///{path}")
    for index in range(300):
        store.add(make_record(f"case-{index}", note="x" * 500))
    store.close()
    with sqlite3.connect(path) as connection:  # fold the WAL into the main file
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)  # keep the header page, wreck every other page
    path.write_bytes(bytes(data))
    with pytest.raises(FeedbackStoreError, match="damaged|not a valid SQLite"):
        FeedbackStore(f"sqlite:///{path}").records()


def test_unopenable_path_raises_a_clear_error(tmp_path):
    with pytest.raises(FeedbackStoreError, match="cannot be opened"):
        FeedbackStore(f"sqlite:///{tmp_path}")  # a folder, not a file
    with pytest.raises(FeedbackStoreError, match="cannot be opened"):
        FeedbackStore(f"sqlite:///{tmp_path / 'missing-folder' / 'feedback.db'}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without read permission")
def test_unreadable_file_raises_a_clear_error(tmp_path):
    path = tmp_path / "private.db"
    FeedbackStore(f"sqlite:///{path}").close()
    path.chmod(0)
    with pytest.raises(FeedbackStoreError, match=str(path)):
        FeedbackStore(f"sqlite:///{path}")


def test_unreachable_postgres_error_redacts_the_password():
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://lesion:s3cret-pw@127.0.0.1:{_free_port()}/feedback"
    with pytest.raises(FeedbackStoreError) as caught:
        FeedbackStore(url, timeout_s=1)
    message = str(caught.value)
    assert "s3cret-pw" not in message and "lesion:***@127.0.0.1" in message


def test_invalid_records_are_refused_with_the_received_value(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    with pytest.raises(ValueError, match="did you mean 'case_review'"):
        store.add(make_record(source="case-review"))
    with pytest.raises(ValueError, match="agree must be True or False; received 'no'"):
        store.add(make_record(agree="no"))
    with pytest.raises(ValueError, match="reviewer must not be empty"):
        store.add(make_record(reviewer=""))
    with pytest.raises(ValueError, match="image_sha256 must be 64 lowercase hex"):
        store.add(make_record(image_sha256="abc123"))
    with pytest.raises(ValueError, match="image_png is not a usable image"):
        store.add(make_record(image_png=b"<html>not an image</html>"))
    with pytest.raises(ValueError, match="at most 20,000"):
        store.add(make_record(note="x" * 20_001))
    with pytest.raises(ValueError, match="Not a database URL"):
        FeedbackStore("not a url")
    assert store.records().empty
    store.close()


def test_store_has_no_way_to_change_or_delete_records():
    public = {name for name in dir(FeedbackStore) if not name.startswith("_")}
    # decide_correction appends an administrator's verdict; save revises by adding a record
    assert public == {"add", "save", "records", "history", "image", "export_csv", "audit",
                      "audit_log", "close", "decide_correction", "correction_decisions",
                      "last_event_at"}  # reads the audit log (sign-out revokes cookies)


def test_several_servers_opening_a_new_database_at_once(database_url):
    """App servers started together all create the tables; none fails because another did."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        stores = list(pool.map(lambda _: FeedbackStore(database_url), range(4)))
    for index, store in enumerate(stores):
        store.add(make_record(f"server-{index}"))
    assert len(stores[0].records()) == 4
    for store in stores:
        store.close()


# ------------------------------------------------------------- a second review revises the first

def test_second_review_of_a_case_supersedes_the_first(database_url):
    store = FeedbackStore(database_url)
    first = store.save(make_record("ISIC_0024310", agree=True, corrected_class=None))
    other_reviewer = store.save(make_record("ISIC_0024310", reviewer="bob"))
    other_model = store.save(make_record("ISIC_0024310", model_id="ensemble.ham10000"))
    second = store.save(make_record("ISIC_0024310", note="on reflection, a nevus"))
    assert (first.revision, first.superseded) == (1, ())
    assert (second.revision, second.superseded) == (2, (first.record_id,))
    assert other_reviewer.revision == other_model.revision == 1
    current = store.records()
    assert sorted(current["id"]) == sorted([other_reviewer.record_id, other_model.record_id,
                                            second.record_id])
    alice = store.records(reviewer="alice", model_id="efficientnetb0.isic-v1")
    assert len(alice) == 1 and not alice.iloc[0]["agree"]  # one review, no contradiction
    history = store.history("ISIC_0024310", "alice", "efficientnetb0.isic-v1")
    assert list(history["revision"]) == [1, 2] and bool(history.iloc[0]["agree"])
    assert history.iloc[0]["superseded_by"] == second.record_id
    assert pd.isna(history.iloc[1]["superseded_by"])
    third = store.save(make_record("ISIC_0024310", agree=True, corrected_class=None))
    assert (third.revision, third.superseded) == (3, (second.record_id,))
    assert len(store.records(include_superseded=True)) == 5
    exported = store.export_csv(include_superseded=True).decode()
    assert exported.count("ISIC_0024310") == 5 and "superseded_by" in exported
    store.close()


def test_same_name_different_image_is_a_different_case(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    store.save(make_record("lesion.jpg", image_sha256="a" * 64))
    store.save(make_record("lesion.jpg", image_sha256="b" * 64))
    assert len(store.records()) == 2
    assert store.save(make_record("lesion.jpg", image_sha256="b" * 64)).revision == 2
    assert len(store.records()) == 2
    store.close()


def test_a_database_from_before_revisions_is_migrated(database_url):
    import sqlalchemy as sa

    old_schema = sa.MetaData()  # the feedback table as shipped before revisions
    sa.Table("feedback", old_schema,
             *[column.copy() for column in feedback._feedback.c
               if column.name not in ("revision", "superseded_by")])
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        old_schema.create_all(connection)
        connection.execute(old_schema.tables["feedback"].insert().values(
            created_at=datetime(2025, 1, 2, 3, 4, 5), case_id="ISIC_0024310",
            source="case_review", model_id="efficientnetb0.isic-v1", model_version="1.0.0",
            predicted_class="melanoma", agree=False, corrected_class="nevus", note="old note",
            reviewer="alice"))
    engine.dispose()
    store = FeedbackStore(database_url)
    old = store.records()
    assert list(old.columns) == list(feedback.RECORD_COLUMNS)
    assert list(old["revision"]) == [1] and old["superseded_by"].isna().all()
    saved = store.save(make_record("ISIC_0024310", agree=True, corrected_class=None))
    assert (saved.revision, saved.superseded) == (2, (int(old.iloc[0]["id"]),))
    store.close()
    reopened = FeedbackStore(database_url)  # a second opening migrates nothing again
    assert list(reopened.records()["note"]) == ["border looks regular"]
    reopened.close()


def test_two_processes_revising_one_review_leave_exactly_one_current(database_url):
    """Two servers revising the same reviews at once left two "current" revisions numbered 2
    (17 of 60 cases on SQLite, 47 of 60 on PostgreSQL). Each case keeps exactly one current
    revision, and revision numbers run 1..N without repeats."""
    FeedbackStore(database_url).close()  # tables first
    script = textwrap.dedent(f"""
        import sys
        from lesionlib.feedback import FeedbackRecord, FeedbackStore
        store = FeedbackStore({database_url!r}, timeout_s=10)
        print("READY", flush=True)
        sys.stdin.readline()  # both start together
        for round in range(15):
            for case in range(4):
                store.save(FeedbackRecord(f"case-{{case}}", "case_review", "m.a", "1", "nv",
                                          False, "mel", f"round {{round}}", "bob"))
    """)
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    writers = [subprocess.Popen([sys.executable, "-c", script], env=environment, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
               for _ in range(2)]
    for writer in writers:
        assert writer.stdout.readline().strip() == "READY"
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.flush()
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    store = FeedbackStore(database_url)
    current = store.records()
    every = store.records(include_superseded=True)
    store.close()
    assert sorted(current["case_id"]) == [f"case-{case}" for case in range(4)]
    for case, revisions in every.groupby("case_id")["revision"]:
        assert sorted(revisions) == list(range(1, 31)), case
