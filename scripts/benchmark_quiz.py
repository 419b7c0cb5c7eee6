"""A class taking the teaching quiz at once: the time of each "Commit my answer", N sessions.

Scripted students (Streamlit's AppTest, one per thread, all in this process like the sessions of
one server) each open the quiz, start a round and commit their answers; the script prints the
median and 90th percentile of the commit times, and the load average. Issue target: with 20
sessions the median commit is at most 1 s (it was 17-43 s with 5 students when the case pool was
rebuilt on every click).

    python scripts/benchmark_quiz.py --sessions 20 --cases 3      # the shipped models
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def student(index: int, cases: int, start: threading.Barrier) -> list[float]:
    """One session: open the quiz, start a round, commit each case; returns commit seconds."""
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=600)
    app.run()
    app.switch_page("pages/teaching.py")
    app.run()
    app.number_input(key="teaching_length").set_value(cases)
    next(button for button in app.button if button.label == "Start the round").click()
    start.wait()  # every student commits at the same time
    app.run()
    timings = []
    for position in range(cases):
        next(radio for radio in app.radio
             if radio.key and radio.key.startswith("teaching_answer_")).set_value("nv")
        commit = next(button for button in app.button if button.label == "Commit my answer")
        began = time.perf_counter()
        commit.click().run()
        timings.append(time.perf_counter() - began)
        label = "Next case" if position < cases - 1 else "See my results"
        next(button for button in app.button if button.label == label).click().run()
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--cases", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("LESIONLIB_FEEDBACK_URL",
                          f"sqlite:///{tempfile.mkdtemp()}/feedback.db")
    os.environ.pop("LESIONLIB_AUTH_CONFIG", None)
    print(f"load average before: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    barrier = threading.Barrier(args.sessions)
    with ThreadPoolExecutor(args.sessions) as pool:
        results = list(pool.map(lambda index: student(index, args.cases, barrier),
                                range(args.sessions)))
    timings = sorted(value for session in results for value in session)
    print(f"{args.sessions} sessions x {args.cases} commits: median "
          f"{statistics.median(timings):.2f} s, 90th percentile "
          f"{timings[int(0.9 * (len(timings) - 1))]:.2f} s, max {timings[-1]:.2f} s "
          "(target: median <= 1 s)")
    print(f"load average after: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
