"""The library never imports Streamlit: all UI lives in dashboard.py, app_*.py and pages/."""

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
    """.importlinter: no Streamlit in the library, the CLI at its top, no import cycles."""
    import shutil
    import subprocess

    import pytest

    command = shutil.which("lint-imports")
    if command is None:
        pytest.skip("import-linter is not installed (pip install -r requirements.txt)")
    result = subprocess.run([command], cwd=LIBRARY.parent, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
