"""The teaching quiz's prefetch: what a reveal shows is computed while the student looks.

While a case is on screen, one background worker fills ``app.resources``' caches with the
prediction, its Grad-CAM and the similar cases; the commit then reads them. Streamlit's cache
lock makes a commit whose prefetch is still running wait for it instead of computing twice.
One worker for the whole server: a class's prefetches queue instead of fighting for the cores.
The quiz asks for a prefetch only where the model has no stored reveal of the case
(``lesionlib.quiz_reveals``, read by ``resources.stored_reveal``), which needs no model work.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from app import resources
from lesionlib import explain, retrieval

_LOCK = threading.Lock()
_pending: set[tuple[str, str]] = set()
_pool: ThreadPoolExecutor | None = None


def _worker() -> ThreadPoolExecutor:
    global _pool
    with _LOCK:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        return _pool


def prefetch_reveal(case: resources.CaseImage, model_id: str,
                    k: int = retrieval.DEFAULT_K) -> None:
    """Queue the reveal's work for ``case`` and ``model_id`` (once while pending). Failures are
    left for the reveal, which computes again and says what failed."""
    key = (case.sha256, model_id)
    with _LOCK:
        if key in _pending:
            return
        _pending.add(key)

    def work() -> None:
        logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(
            logging.ERROR)  # this thread has no page context, on purpose
        try:
            result = resources.predict(case, model_id)
            resources.heatmap(case, model_id, explain.METHODS[0],
                              resources.output_index(model_id, result.prediction.top_class))
            resources.similar_cases(case, model_id, k)
            if resources.dataset_dir() is None:
                resources.similar_cases(case, model_id, k, reference="samples")
        except Exception:  # noqa: BLE001 - the reveal computes again and says what failed
            pass
        finally:
            with _LOCK:
                _pending.discard(key)

    _worker().submit(work)
