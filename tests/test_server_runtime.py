"""The server keeps its shared models' state between script runs (``app.server_runtime``,
``.streamlit/config.toml``): Streamlit's per-run Keras clear-session and forced full garbage
collection cost more CPU than the quiz's reveal itself with a class at once."""

from __future__ import annotations

import sys
import tomllib

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))


def test_the_runner_no_longer_clears_the_keras_session(monkeypatch):
    import inspect

    import keras
    from streamlit.runtime.scriptrunner import script_runner

    from app import server_runtime

    # the pinned Streamlit's own clean-up clears the Keras session (read from its source: an
    # earlier test's dashboard run may have installed the replacement in this process already)
    source = inspect.getsource(script_runner)
    original = source[source.index("def _clean_problem_modules"):]
    assert "keras" in original[:original.index("\ndef ")] and "clear_session" in original
    cleared = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: cleared.append(1))
    # start from a runner that clears the session, as Streamlit's does (restored after the test)
    monkeypatch.setattr(script_runner, "_clean_problem_modules",
                        lambda: sys.modules["keras"].backend.clear_session())
    script_runner._clean_problem_modules()
    assert cleared == [1]
    cleared.clear()
    server_runtime.install()
    server_runtime.install()  # idempotent
    script_runner._clean_problem_modules()
    assert cleared == []
    assert script_runner._clean_problem_modules is server_runtime._clean_problem_modules_but_keras


def test_the_dashboard_installs_it():
    from streamlit.testing.v1 import AppTest

    from streamlit.runtime.scriptrunner import script_runner

    original = script_runner._clean_problem_modules
    try:
        AppTest.from_file(str(REPO_ROOT / "dashboard.py"), default_timeout=60).run()
        assert script_runner._clean_problem_modules.__module__ == "app.server_runtime"
    finally:
        script_runner._clean_problem_modules = original


def test_server_config_turns_off_the_per_run_gc_and_the_file_watcher():
    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
    assert config["server"]["fileWatcherType"] == "none"
