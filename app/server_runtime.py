"""Undo the one clean-up Streamlit does after every script run that a model server must not.

Streamlit's script runner calls ``keras.backend.clear_session()`` after every run of every
session (``script_runner._clean_problem_modules``): it resets TensorFlow's default graph, empties
the eager kernel cache that all sessions' cached models share, and forces a full garbage
collection of a heap that holds TensorFlow. Profiled with 4 scripted quiz sessions
(``py-spy record`` of ``scripts/benchmarks/benchmark_quiz_class.py``) it was 23% of the server's
CPU. The dashboard builds no Keras models per run: they are loaded once and shared
(``app.resources``), so there is no per-run Keras state to clear. ``install`` keeps the rest of
that clean-up (closing matplotlib's figures). The garbage collection Streamlit forces after each
run is turned off in ``.streamlit/config.toml`` (``runner.postScriptGC``), for the same reason.
"""

from __future__ import annotations

import sys

from streamlit.runtime.scriptrunner import script_runner


def _clean_problem_modules_but_keras() -> None:
    """Streamlit's ``_clean_problem_modules`` without ``keras.backend.clear_session()``."""
    if "matplotlib.pyplot" in sys.modules:
        try:
            sys.modules["matplotlib.pyplot"].close("all")
        except Exception:  # noqa: BLE001 - as Streamlit: never fail a run over figures
            pass


def install() -> None:
    """Replace the runner's clean-up (idempotent; every script run looks it up by name).

    Raises:
        RuntimeError: this Streamlit has no ``_clean_problem_modules`` (its internals changed:
            check whether it still clears the Keras session before upgrading).
    """
    if not hasattr(script_runner, "_clean_problem_modules"):
        raise RuntimeError("streamlit.runtime.scriptrunner.script_runner has no "
                           "_clean_problem_modules; expected Streamlit 1.67's runner.")
    script_runner._clean_problem_modules = _clean_problem_modules_but_keras
