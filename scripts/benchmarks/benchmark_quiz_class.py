"""A class taking the teaching quiz at once: the commit time of 20 concurrent sessions.

Starts the real dashboard server (``serve.py``: the default model warmed) on the shipped weights,
then plays the quiz: first one session alone (the reference), then ``--sessions`` sessions at the
same time, each starting a round of ``--cases`` cases and committing an answer per case after
looking at it for ``--think-seconds``. Prints and writes the median, 90th percentile and maximum
commit time, and their ratio to the lone session's, measured in the same run. Target (issue:
dashboard defects): median commit <= 1 s with 20 scripted sessions.

    python scripts/benchmarks/benchmark_quiz_class.py [--client protocol|chromium]
        [--sessions 20] [--cases 3] [--think-seconds 5] [--out reports/quiz_class.md]

``--client protocol`` (default): scripted sessions speak Streamlit's websocket protocol
(``streamlit_session.py``), so the machine does only the server's work, as in a class where each
student has their own computer; a commit runs from the request to the reveal's answer arriving,
and to the end of the run that draws the whole reveal (heatmap and similar cases included).
``--client chromium``: a headless Chromium page per session on this machine, from the click to
the reveal on screen; the browsers share the server's cores, so it is an upper bound. Check
``uptime`` first: run it on a quiet machine. The report gives the server's peak memory; Streamlit
options can be changed for one run by environment, e.g. ``STREAMLIT_RUNNER_POST_SCRIPT_GC=true``.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
TIMEOUT_MS = 300_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_peak_mb(pid: int) -> str:
    """The server process's peak resident memory (``VmHWM``) in MB, or "unknown"."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "unknown"
    kilobytes = next((line.split()[1] for line in status.splitlines()
                      if line.startswith("VmHWM:")), None)
    return f"{int(kilobytes) / 1024:.0f}" if kilobytes else "unknown"


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    environment = {key: value for key, value in os.environ.items()
                   if key != "LESIONLIB_AUTH_CONFIG"}
    environment["LESIONLIB_FEEDBACK_URL"] = f"sqlite:///{folder / 'feedback.db'}"
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "serve.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {folder / 'server.log'}")
            time.sleep(0.5)


async def idle(page) -> None:
    await page.wait_for_timeout(300)
    await page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden")


async def one_session(browser, url: str, cases: int, think_s: float) -> list[float]:
    """One student's round: the seconds of each commit (click to reveal), after looking at
    each case for ``think_s`` seconds."""
    context = await browser.new_context(viewport={"width": 1280, "height": 1600})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(url)
    await page.get_by_role("heading", name="Case review").first.wait_for()
    await page.goto(f"{url}/teaching")
    await page.get_by_role("heading", name="Teaching quiz").first.wait_for()
    await idle(page)
    await page.get_by_label("Cases in the round").fill(str(cases))
    await page.get_by_role("button", name="Start the round").click()
    times = []
    for position in range(cases):
        await page.get_by_text(f"Case {position + 1} of {cases}").first.wait_for()
        await idle(page)
        await page.wait_for_timeout(think_s * 1000)  # the student looks at the image
        await page.get_by_text("nv — Melanocytic nevus").first.click()
        started = time.perf_counter()
        await page.get_by_role("button", name="Commit my answer").click()
        await page.get_by_text("confirmed by").first.wait_for()
        times.append(time.perf_counter() - started)
        await idle(page)
        label = "Next case" if position + 1 < cases else "See my results"
        await page.get_by_role("button", name=label).click()
    await page.get_by_text("Your balanced accuracy").first.wait_for()
    await context.close()
    return times


async def protocol_session(url: str, cases: int, think_s: float,
                           model: str | None = None) -> list[float]:
    """``one_session`` spoken in Streamlit's websocket protocol (``streamlit_session``): the
    same clicks and the same reveal, timed from the request to the reveal's element arriving."""
    from streamlit_session import ScriptedSession, choose, click, number

    async with ScriptedSession(url, "teaching") as session:
        await session.run()
        chosen = [] if model is None else [choose(session.widget(
            "selectbox", "Model to compare with"), model)]
        await session.run([*chosen, number(session.widget("number_input", "Cases in the round"),
                                           cases),
                           click(session.widget("button", "Start the round"))])
        times = []
        for position in range(cases):
            await asyncio.sleep(think_s)  # the student looks at the image
            answer = choose(session.widget("radio", "Your diagnosis"), "nv — Melanocytic nevus")
            times.append(await session.run(
                [answer, click(session.widget("button", "Commit my answer"))],
                until="confirmed by"))  # (the answer shown, the whole reveal drawn)
            label = "Next case" if position + 1 < cases else "See my results"
            await session.run([click(session.widget("button", label))],
                              until="Case " if position + 1 < cases else "balanced accuracy")
    return times


async def measure_protocol(url: str, sessions: int, cases: int, think_s: float,
                           model: str | None = None) -> dict:
    await protocol_session(url, 1, 0, model)  # warms the quiz pool and the first heatmaps
    alone = await protocol_session(url, cases, think_s, model)
    results = await asyncio.gather(*(protocol_session(url, cases, think_s, model)
                                     for _ in range(sessions)))
    together = [value for times in results for value in times]
    return {"the answer shown": ([a for a, _ in alone], [a for a, _ in together]),
            "the whole reveal drawn (answer, heatmap, similar cases)": (
                [b for _, b in alone], [b for _, b in together])}


async def measure(url: str, sessions: int, cases: int, think_s: float,
                  model: str | None = None) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        await one_session(browser, url, 1, 0)  # warms the quiz pool and the first heatmaps
        alone = await one_session(browser, url, cases, think_s)
        results = await asyncio.gather(*(one_session(browser, url, cases, think_s)
                                         for _ in range(sessions)))
        await browser.close()
    return {"the answer on screen": (alone, [value for times in results for value in times])}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--think-seconds", type=float, default=5.0,
                        help="how long each student looks at a case before answering")
    parser.add_argument("--client", choices=("protocol", "chromium"), default="protocol",
                        help="protocol: scripted sessions speaking Streamlit's websocket "
                        "protocol (the server's work alone, as when each student has their own "
                        "computer); chromium: a headless Chromium page per session on this "
                        "machine (an upper bound: the browsers share the server's cores)")
    parser.add_argument("--model", help="the quiz's model as its picker shows it, e.g. "
                        "'EfficientNet-Lite0 (fast, mobile) v3.0.0' (default: the page's "
                        "default, the ensemble; --client protocol only)")
    parser.add_argument("--out", help="the report (default: reports/quiz_class.md, or "
                        "reports/quiz_class_chromium.md with --client chromium)")
    args = parser.parse_args()
    if args.model and args.client != "protocol":
        parser.error("--model needs --client protocol")
    args.out = args.out or str(REPO_ROOT / "reports" / (
        "quiz_class.md" if args.client == "protocol" else "quiz_class_chromium.md"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # streamlit_session
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        process, url = start_server(Path(scratch))
        try:
            driver = measure_protocol if args.client == "protocol" else measure
            measured = asyncio.run(driver(url, args.sessions, args.cases, args.think_seconds,
                                          args.model))
        except BaseException:
            log_tail = (Path(scratch) / "server.log").read_text().splitlines()[-60:]
            print("the server's last log lines:", *log_tail, sep="\n", file=sys.stderr)
            raise
        finally:
            peak_mb = server_peak_mb(process.pid)
            process.terminate()
            process.wait(timeout=30)
    load_after = os.getloadavg()
    flags = sorted({flag for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("flags") for flag in line.split()
                    if flag.startswith(("avx2", "avx512f", "amx_tile"))})
    clients = ("scripted sessions speaking Streamlit's websocket protocol "
               "(`scripts/benchmarks/streamlit_session.py`: the server's work alone, no page "
               "rendering, as when each student has their own computer); a commit runs from "
               "the request with the answer and the click on \"Commit my answer\" to the "
               "reveal's first element arriving (the answer), and to the end of the run that "
               "draws the whole reveal" if args.client == "protocol" else
               "headless Chromium on the same machine (so an upper bound: the browsers share "
               "the server's cores); a commit runs from the click on \"Commit my answer\" to "
               "the reveal on screen")
    lines = ["# Teaching quiz: a class at once", "",
             "Written by `" + "".join(f"{name}={value} " for name, value in sorted(
                 os.environ.items()) if name.startswith("STREAMLIT_"))
             + "python scripts/benchmarks/benchmark_quiz_class.py --client "
             f"{args.client} --sessions {args.sessions} --cases {args.cases} --think-seconds "
             f"{args.think_seconds:g}" + (f" --model '{args.model}'" if args.model else "")
             + f"`: the real server (`serve.py`, shipped weights), "
             f"{clients}. Each session plays a round of {args.cases} cases, each case looked "
             f"at for {args.think_seconds:g} s before answering.", "",
             f"{os.cpu_count()} cores ({', '.join(flags) or 'no AVX2'}); load average before "
             f"{load_before[0]:.2f}, after {load_after[0]:.2f}. Server peak memory (VmHWM): "
             f"{peak_mb} MB.", "",
             "| commit until | sessions | commits | median (s) | 90th percentile (s) | max (s) "
             "| median vs alone |", "|---|---|---|---|---|---|---|"]
    for metric, (alone, together) in measured.items():
        for title, values in (("one session alone (reference)", alone),
                              (f"{args.sessions} sessions at once", together)):
            lines.append(f"| {metric} | {title} | {len(values)} | "
                         f"{statistics.median(values):.2f} | {percentile(values, 0.9):.2f} | "
                         f"{max(values):.2f} | "
                         f"{statistics.median(values) / max(statistics.median(alone), 1e-3):.1f}x |")
    median = statistics.median(next(iter(measured.values()))[1])
    verdict = "met" if median <= 1.0 else "NOT met"
    lines += ["", f"Target: median commit <= 1 s with {args.sessions} sessions (until "
              f"{next(iter(measured))}): **{verdict}** ({median:.2f} s).", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
