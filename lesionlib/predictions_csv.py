"""The CSV that ``predict`` writes: checked before any scoring, grown batch by batch, resumable.

Rows are appended and flushed after every batch, so an interrupted run keeps what it scored. A
run on an existing file resumes it: inputs whose name is already in its ``file`` column are
skipped. A file written by another model or version, or that is not a predictions file, is
refused (never mixed, never overwritten).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd

from lesionlib.inference import OUTPUT_COLUMNS
from lesionlib.plain_text import csv_cell

TEXT_COLUMNS = ("file", "warning", "error")  # written through csv_cell: one line, no formula

HEADER = ",".join(OUTPUT_COLUMNS) + "\n"


class OutputFileError(ValueError):
    """The output CSV cannot be used; the message says why and what is expected."""


class PredictionsFile:
    """An output CSV for one model: ``done`` holds the names it already has rows for.

    Use as a context manager around the scoring loop; ``append`` writes and flushes one batch.

    Raises:
        OutputFileError: at construction, when the path is a folder, its folder is missing or
            not writable, or the file exists with other columns or another model's rows; on
            entering, when the file cannot be opened for appending.
    """

    def __init__(self, path: str | Path, model_id: str, model_version: str):
        self.path = Path(path)
        self.model_id, self.model_version = model_id, model_version
        check_output_location(self.path)
        self._complete_text = _complete_rows(self.path)
        self.done = self._existing_names()
        self.written = 0
        self._handle = None

    def _existing_names(self) -> set[str]:
        if not self._complete_text:
            return set()
        if not self._complete_text.startswith(HEADER):
            header = self._complete_text.partition("\n")[0][:200]
            raise OutputFileError(f"--out {self.path} exists and is not a predictions file "
                                  f"(its header is {header!r}); choose another --out.")
        try:
            frame = pd.read_csv(io.StringIO(self._complete_text), dtype=str,
                                keep_default_na=False)
        except (pd.errors.ParserError, ValueError) as error:
            raise OutputFileError(
                f"--out {self.path} cannot be read back as a predictions file "
                f"({str(error).splitlines()[0][:160]}); choose another --out, or delete the "
                "file to start over.") from None
        if "file" not in frame.columns:
            raise OutputFileError(f"--out {self.path} has no 'file' column; choose another "
                                  "--out.")
        found = set(zip(frame["model_id"], frame["model_version"]))
        if found - {(self.model_id, self.model_version)}:
            models = ", ".join(f"{model} v{version}" for model, version in sorted(found))
            raise OutputFileError(
                f"--out {self.path} holds predictions of {models}; this run uses "
                f"{self.model_id} v{self.model_version}. Choose another --out (or delete the "
                "file to start over): one file never mixes models.")
        return set(frame["file"])

    def has_row_for(self, name: str) -> bool:
        """Whether the file already holds the row of the input called ``name``."""
        return csv_cell(name) in self.done

    def __enter__(self) -> "PredictionsFile":
        try:
            if self._complete_text != _read_text(self.path):  # drop a half-written last row
                self.path.write_text(self._complete_text)
            self._handle = self.path.open("a", newline="")
            if not self._complete_text:
                self._handle.write(HEADER)
                self._handle.flush()
        except OSError as error:
            raise OutputFileError(f"--out {self.path}: cannot write "
                                  f"({error.strerror or error}).") from None
        return self

    def append(self, frame: pd.DataFrame) -> None:
        """Write one batch's rows (``OUTPUT_COLUMNS``) and flush them to the file.

        Text cells go through ``csv_cell``: a name that is not UTF-8 or holds a line break is
        written escaped on one line (so resuming after a kill finds whole rows), and a name a
        spreadsheet would run as a formula is defused."""
        frame = frame[list(OUTPUT_COLUMNS)].copy()
        for column in TEXT_COLUMNS:
            frame[column] = frame[column].map(csv_cell)
        frame.to_csv(self._handle, header=False, index=False,
                                           float_format="%.6f", lineterminator="\n")
        self._handle.flush()
        self.written += len(frame)

    def __exit__(self, *exc_info) -> None:
        if self._handle:
            self._handle.close()
            self._handle = None


def check_output_location(path: Path) -> None:
    """Refuse an output path that cannot be written, before any work is done.

    Raises:
        OutputFileError: a folder, a missing or unwritable folder, or an unwritable file.
    """
    if path.is_dir():
        raise OutputFileError(f"--out {path} is a folder; expected a CSV file name, e.g. "
                              f"{path / 'predictions.csv'}.")
    folder = path.parent
    if not folder.is_dir():
        raise OutputFileError(f"--out {path}: the folder {folder} does not exist; create it "
                              "first or choose another --out.")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise OutputFileError(f"--out {path} exists but cannot be read and written; check its "
                              "permissions or choose another --out.")
    if not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise OutputFileError(f"--out {path}: the folder {folder} is not writable; choose "
                              "another --out.")


def _read_text(path: Path) -> str:
    if not path.exists():
        return ""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise OutputFileError(f"--out {path} exists and is not a predictions file (not UTF-8 "
                              "text); choose another --out.") from None
    except OSError as error:
        raise OutputFileError(f"--out {path}: cannot read ({error.strerror or error}).") from None


def _complete_rows(path: Path) -> str:
    """The file's text up to its last complete line (an interrupted write may leave half a row)."""
    text = _read_text(path)
    if text.endswith("\n") or not text:
        return text
    if "\n" not in text:  # part of our own header was written, or another file (refused)
        return "" if HEADER.startswith(text) else text
    return text[:text.rfind("\n") + 1]


__all__ = ["PredictionsFile", "OutputFileError", "HEADER"]
