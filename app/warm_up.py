"""Warming the dashboard's caches while the server starts (``serve.py`` runs ``run`` in a
thread), so the first visitor does not wait for TensorFlow, the weights and the first heatmap."""

from __future__ import annotations

from app import resources
from lesionlib import explain


def run(log=print) -> None:
    """Load the default model, its explainers and gate, and compute the first case's
    prediction and Grad-CAM. Any failure is logged and left for the page to report as it
    would without a warm-up."""
    import time

    started = time.perf_counter()
    try:
        model_id = resources.current_catalogue().default_id()
        if model_id is None:
            log("warm-up: no valid model to load")
            return
        resources.explainers(model_id)
        resources.quality_checker(model_id)
        files = list(resources.available_samples()["file"])
        if files:
            case = resources.case_from_file(resources.SAMPLE_DIR / files[0], "sample")
            result = resources.predict(case, model_id)
            resources.heatmap(case, model_id, explain.METHODS[0],
                              resources.output_index(model_id, result.prediction.top_class))
        log(f"warm-up: {model_id} ready in {time.perf_counter() - started:.1f} s")
    except Exception as error:  # noqa: BLE001 - the page reports the same failure properly
        log(f"warm-up: stopped ({type(error).__name__}: {error}); pages load on first use")
