"""``app.warm_up.run`` (what ``serve.py`` runs while the server starts) fills the caches
the first visitor needs, and a failure is a log line, never an exception."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))

from app import warm_up  # noqa: E402


@pytest.fixture()
def resources(tiny_weights_dir, monkeypatch):
    from app import resources

    monkeypatch.setenv("LESIONLIB_WEIGHTS", str(tiny_weights_dir))
    resources.st.cache_resource.clear()
    resources.st.cache_data.clear()
    yield resources
    resources.st.cache_resource.clear()
    resources.st.cache_data.clear()


def test_warm_up_caches_the_default_model_and_first_case(resources):
    lines = []
    warm_up.run(log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("warm-up: ") and "ready in" in lines[0]
    model_id = resources.current_catalogue().default_id()
    assert model_id in lines[0]
    calls = []
    original = resources.registry.load_classifier
    resources.registry.load_classifier = lambda *args, **kwargs: calls.append(args) or \
        original(*args, **kwargs)
    try:
        resources.classifier(model_id)  # served from the warmed cache: nothing loads again
    finally:
        resources.registry.load_classifier = original
    assert calls == []


def test_warm_up_failure_is_one_log_line(resources, tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONLIB_WEIGHTS", str(tmp_path))  # no models at all
    lines = []
    warm_up.run(log=lines.append)
    assert lines == ["warm-up: no valid model to load"]


def test_serve_runs_streamlit_on_the_dashboard(monkeypatch):
    import serve

    seen = {}
    monkeypatch.setattr(serve, "_warm_up", lambda: seen.setdefault("warmed", True))
    monkeypatch.setattr("streamlit.web.cli.main", lambda: seen.setdefault("argv", sys.argv[:]) and 0)
    monkeypatch.setattr(sys, "argv", ["serve.py", "--server.port", "8599"])
    assert serve.main() == 0
    assert seen["argv"][:2] == ["streamlit", "run"] and seen["argv"][2].endswith("dashboard.py")
    assert seen["argv"][3:] == ["--server.port", "8599"]
