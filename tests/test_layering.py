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
