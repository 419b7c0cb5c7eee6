"""Cold start in a real browser: from server start to the first case's heatmap on screen.

For each launcher (``streamlit run dashboard.py``, and ``python serve.py``, which warms the
default model while the server starts), a fresh server with the shipped weights is started and
headless Chromium opens Case review:

- **visitor at start**: the browser opens the page as soon as the server answers; timed from
  server start, and from the page request, to the Grad-CAM caption on screen;
- **first visitor after start-up**: (``serve.py``) the page is opened once the warm-up has
  logged "ready"; (``streamlit run``) a second browser opens it after the first visitor's load.
  Timed from the page request.

Reference in the same run: ``import tensorflow, keras`` in a fresh process. Needs Chromium
(``apt-get install chromium``) and playwright. Usage::

    python scripts/benchmarks/benchmark_cold_start.py [--out reports/cold_start.md]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
SIGNAL = "Grad-CAM for"  # the heatmap overlay's caption
TIMEOUT_MS = 600_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(launcher: str, folder: Path) -> tuple[subprocess.Popen, str, float, Path]:
    port = free_port()
    options = ["--server.headless", "true", "--server.port", str(port), "--server.address",
               "127.0.0.1", "--browser.gatherUsageStats", "false"]
    command = ([sys.executable, "serve.py", *options] if launcher == "serve" else
               [sys.executable, "-m", "streamlit", "run", "dashboard.py", *options])
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("LESIONLIB_AUTH_CONFIG", "LESIONLIB_WEIGHTS")}
    environment["LESIONLIB_FEEDBACK_URL"] = f"sqlite:///{folder / 'feedback.db'}"
    log = folder / f"{launcher}.log"
    started = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=handle,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            return process, url, started, log
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"{launcher} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)


def open_case_review(browser, url: str) -> float:
    """Seconds from the page request to the heatmap caption on screen."""
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.set_default_timeout(TIMEOUT_MS)
    requested = time.perf_counter()
    page.goto(url)
    page.get_by_text(SIGNAL).first.wait_for()
    seconds = time.perf_counter() - requested
    page.close()
    return seconds


def wait_for_log(log: Path, pattern: str, process) -> None:
    while not re.search(pattern, log.read_text()):
        if process.poll() is not None:
            raise SystemExit(f"server stopped:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)


def measure(launcher: str, browser, folder: Path) -> dict:
    figures = {}
    process, url, started, log = start(launcher, folder)
    try:
        figures["health_s"] = time.perf_counter() - started
        figures["at_start_page_s"] = open_case_review(browser, url)
        figures["at_start_total_s"] = time.perf_counter() - started
        if launcher == "streamlit":
            figures["after_page_s"] = open_case_review(browser, url)
    finally:
        process.terminate()
        process.wait(timeout=30)
    if launcher == "serve":
        process, url, started, log = start(launcher, folder)
        try:
            wait_for_log(log, r"warm-up: .* ready", process)
            figures["warm_up_s"] = time.perf_counter() - started
            figures["after_page_s"] = open_case_review(browser, url)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return figures


def import_reference() -> float:
    code = ("import time; t = time.perf_counter(); import tensorflow, keras; "
            "print(time.perf_counter() - t)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.strip().splitlines()[-1])


def report(results: dict, reference: float, command: str) -> str:
    streamlit, serve = results["streamlit"], results["serve"]
    rows = [
        ("`streamlit run dashboard.py`, visitor at start: server start → heatmap on screen",
         streamlit["at_start_total_s"]),
        ("`streamlit run dashboard.py`, visitor at start: page request → heatmap",
         streamlit["at_start_page_s"]),
        ("`streamlit run dashboard.py`, next visitor: page request → heatmap",
         streamlit["after_page_s"]),
        ("`python serve.py`, visitor at start: server start → heatmap on screen",
         serve["at_start_total_s"]),
        ("`python serve.py`: server start → warm-up ready", serve["warm_up_s"]),
        ("`python serve.py`, first visitor after the warm-up: page request → heatmap",
         serve["after_page_s"]),
    ]
    lines = ["# Cold start in a browser (Case review, default model, first sample)", "",
             f"Measured by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{os.cpu_count()} CPU cores, headless Chromium, the shipped weights (load average "
             f"{os.getloadavg()[0]:.1f} at the end). Reference in the same run: "
             f"`import tensorflow, keras` in a fresh process, {reference:.1f} s.", "",
             "| what | seconds | × import reference | target |", "|---|---|---|---|"]
    for what, seconds in rows:
        lines.append(f"| {what} | {seconds:.1f} | {seconds / reference:.1f}x | ≤ 5 s |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "reports" / "cold_start.md"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    reference = import_reference()
    results = {}
    with tempfile.TemporaryDirectory(prefix="cold_start_") as temporary, \
            sync_playwright() as playwright:
        for launcher in ("streamlit", "serve"):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                results[launcher] = measure(launcher, browser, Path(temporary))
            finally:
                browser.close()
            print(launcher, {key: round(value, 2) for key, value in results[launcher].items()},
                  flush=True)
    command = "python scripts/benchmarks/benchmark_cold_start.py " + " ".join(sys.argv[1:])
    text = report(results, reference, command.strip())
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
