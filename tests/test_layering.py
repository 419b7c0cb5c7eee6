"""The library never imports Streamlit: all UI lives in dashboard.py, app/ and pages/."""

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent.parent / "lesionlib"


def test_lesionlib_does_not_import_streamlit():
    offenders = []
    for path in LIBRARY.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {name}" for name in names
                          if name.split(".")[0] == "streamlit"]
    assert not offenders, offenders


def test_the_import_contracts_hold():
    """.importlinter: pages -> app -> lesionlib; no Streamlit or app in the library; the CLI at
    its top; no import cycles."""
    import shutil
    import subprocess

    import pytest

    command = shutil.which("lint-imports")
    if command is None:
        pytest.skip("import-linter is not installed (pip install -r requirements.txt)")
    result = subprocess.run([command], cwd=LIBRARY.parent, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_a_client_disconnect_is_one_log_line_not_a_traceback():
    """Fast uploads left 14 `starlette.requests.ClientDisconnect` tracebacks in the server log."""
    import logging

    from starlette.requests import ClientDisconnect

    from lesionlib import server_logging

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.INFO)
            self.lines = []

        def emit(self, record):
            self.lines.append((record.levelname, self.format(record)))

    server_logging.install()
    server_logging.install()  # once per process, however often the page script runs
    logger = logging.getLogger("uvicorn.error")  # Streamlit may have stopped its propagation
    assert sum(isinstance(each, server_logging.DisconnectFilter) for each in logger.filters) == 1
    collected = Collect()
    logger.addHandler(collected)
    try:
        try:
            try:
                raise ClientDisconnect()
            except ClientDisconnect as inner:
                raise ExceptionGroup("task group", [inner])
        except ExceptionGroup:
            logger.error("Exception in ASGI application\n", exc_info=True)
        try:
            raise ValueError("a real bug")
        except ValueError:
            logger.error("Exception in ASGI application\n", exc_info=True)
    finally:
        logger.removeHandler(collected)
    (level, text), (_, real) = collected.lines
    assert level == "WARNING" and text == server_logging.DISCONNECT_MESSAGE
    assert "Traceback" in real  # real errors keep theirs


def test_modules_stay_small_and_are_listed_in_the_layout_page():
    """No module of app/ or lesionlib/ is over 600 lines, and docs/layout.md names each one."""
    root = LIBRARY.parent
    layout = (root / "docs" / "layout.md").read_text()
    modules = [path for folder in ("app", "lesionlib", "lesionlib/commands")
               for path in sorted((root / folder).glob("*.py"))
               if path.name not in ("__init__.py", "__main__.py")]
    too_long = {str(path.relative_to(root)): count for path in modules
                if (count := len(path.read_text().splitlines())) > 600}
    assert not too_long, f"over 600 lines: {too_long}"
    unlisted = [str(path.relative_to(root)) for path in modules
                if f"| `{path.name}` |" not in layout]
    assert not unlisted, f"add these to docs/layout.md: {unlisted}"
