"""End to end: the real ``streamlit run dashboard.py`` server, driven in headless Chromium.

Opens every page, uploads a sample image on Case review, waits for the prediction and the
heatmap, and saves a screenshot of each page into ``$E2E_SCREENSHOTS`` (default: a temporary
folder). Uses the tiny weights fixture unless ``E2E_REAL_WEIGHTS=1`` (then the shipped
``weights/``). To refresh the documentation screenshots with the real models:

    E2E_REAL_WEIGHTS=1 E2E_SCREENSHOTS=docs/screenshots pytest tests/test_e2e_browser.py

With Debian's ``poppler-utils`` (``pdftoppm``) the downloaded case report is saved as
``case_report.png`` beside them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import SAMPLE_DIR, build_tiny_weights
from page_fixtures import add_fake_predictions

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
START_TIMEOUT_S = 90
RENDER_TIMEOUT_MS = 180_000  # first model load and heatmap on 2 busy cores
PAGES = (("", "case_review", "Case review"), ("compare", "compare", "Compare models"),
         ("explorer", "explorer", "Dataset explorer"),
         ("audit", "audit", "Performance and error audit"),
         ("feedback", "feedback", "Reviewer feedback"), ("models", "models", "Models"))
SAMPLE_FILE = "ISIC_0024904.jpg"

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.is_file(),
                                 reason=f"no Chromium at {CHROMIUM} (apt-get install chromium, "
                                        "or set E2E_CHROMIUM)")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory) -> Path:
    if os.environ.get("E2E_REAL_WEIGHTS") == "1":
        return REPO_ROOT / "weights"
    from test_retrieval import build_sample_index

    from test_embedding_map import build_sample_map

    folder = build_tiny_weights(tmp_path_factory.mktemp("e2e_weights"))
    add_fake_predictions(folder)
    build_sample_index(folder)
    build_sample_map(folder)  # the audit page's embedding map (tiny0 features)
    return folder


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("E2E_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _serve(weights_folder: Path, folder: Path, **extra_environment: str):
    """Serve the dashboard on a free port; yields its URL; stops the server afterwards."""
    port = _free_port()
    log_path = folder / "streamlit.log"
    environment = {key: value for key, value in os.environ.items()
                   if key != "LESIONLIB_AUTH_CONFIG"}
    environment.update(LESIONLIB_WEIGHTS=str(weights_folder),
                       LESIONLIB_FEEDBACK_URL=f"sqlite:///{folder / 'feedback.db'}",
                       **extra_environment)
    command = [sys.executable, "-m", "streamlit", "run", "dashboard.py",
               "--server.headless", "true", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=log,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    log_text = log_path.read_text()
    assert "Traceback" not in log_text, log_text[-3000:]


@pytest.fixture(scope="module")
def server(weights_folder, tmp_path_factory):
    """The dashboard with sign-in off."""
    yield from _serve(weights_folder, tmp_path_factory.mktemp("server"))


@pytest.fixture(scope="module")
def browser_page(server):
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        page.set_default_timeout(RENDER_TIMEOUT_MS)
        yield page
        browser.close()


def _wait_until_idle(page) -> None:
    """Streamlit shows a 'Running...' status widget while the script runs."""
    page.wait_for_timeout(500)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden")
    page.wait_for_timeout(1000)


def _assert_no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.content()[:2000]


@pytest.mark.parametrize("path,name,title", PAGES)
def test_page_opens(browser_page, server, screenshot_dir, path, name, title):
    page = browser_page
    page.goto(f"{server}/{path}")
    page.get_by_role("heading", name=title).first.wait_for()
    page.get_by_text("not a diagnosis").first.wait_for()
    _wait_until_idle(page)
    _assert_no_exception(page)
    assert page.get_by_text("CC BY-NC 4.0").count() >= 1
    if name != "case_review":
        page.screenshot(path=str(screenshot_dir / f"{name}.png"), full_page=True)


def test_case_review_upload_prediction_and_heatmap(browser_page, server, screenshot_dir,
                                                   tmp_path):
    page = browser_page
    page.goto(server)
    page.get_by_role("heading", name="Case review").first.wait_for()
    page.get_by_text("Upload", exact=True).click()
    upload = tmp_path / "lesion.jpg"
    shutil.copyfile(SAMPLE_DIR / SAMPLE_FILE, upload)
    page.locator("input[type='file']").set_input_files(str(upload))
    page.get_by_text("Top diagnosis").first.wait_for()
    page.get_by_text("Calibrated confidence").first.wait_for()
    page.get_by_text("Grad-CAM for").first.wait_for()  # the overlay's caption
    _wait_until_idle(page)
    _assert_no_exception(page)
    assert page.get_by_text("Intended use").count() >= 1
    assert page.locator("[data-testid='stImage']").count() >= 3
    page.screenshot(path=str(screenshot_dir / "case_review.png"), full_page=True)
    # the case report, downloaded from the browser: a one-page PDF and FHIR JSON
    import json

    import pypdf

    with page.expect_download() as pdf_download:
        page.get_by_role("button", name="Download report (PDF)").click()
    pdf_path = tmp_path / "report.pdf"
    pdf_download.value.save_as(pdf_path)
    assert pdf_download.value.suggested_filename.startswith("case_report_")
    assert "lesion" not in pdf_download.value.suggested_filename  # not the upload's name
    reader = pypdf.PdfReader(pdf_path)
    text = " ".join(reader.pages[0].extract_text().split())
    assert len(reader.pages) == 1 and "not a diagnosis" in text and "version" in text
    if shutil.which("pdftoppm"):  # the report as the documentation shows it (poppler-utils)
        subprocess.run(["pdftoppm", "-png", "-r", "80", "-singlefile", str(pdf_path),
                        str(screenshot_dir / "case_report")], check=True, timeout=60)
    with page.expect_download() as fhir_download:
        page.get_by_role("button", name="Download report (FHIR JSON)").click()
    fhir_path = tmp_path / "report.fhir.json"
    fhir_download.value.save_as(fhir_path)
    from fhir.resources.bundle import Bundle

    bundle = Bundle.model_validate(json.loads(fhir_path.read_text()))
    assert {entry.resource.get_resource_type() for entry in bundle.entry} >= {
        "DiagnosticReport", "Observation", "Device", "DocumentReference"}


def test_teaching_round_and_similar_cases(browser_page, server, screenshot_dir):
    """A one-case quiz round: hidden until committed, then reference, model, similar cases."""
    page = browser_page
    page.goto(server)  # a fresh server's first visit lands on the default page
    page.get_by_role("heading", name="Case review").first.wait_for()
    page.goto(f"{server}/teaching")
    page.get_by_role("heading", name="Teaching quiz").first.wait_for()
    _wait_until_idle(page)
    page.get_by_label("Cases in the round").fill("1")
    page.get_by_role("button", name="Start the round").click()
    page.get_by_text("Case 1 of 1").first.wait_for()
    _wait_until_idle(page)
    assert page.get_by_text("confirmed by").count() == 0
    assert page.get_by_text("diagnosis hidden").count() >= 1
    page.get_by_text("mel — Melanoma").first.click()
    page.get_by_role("button", name="Commit my answer").click()
    page.get_by_text("confirmed by").first.wait_for()
    page.get_by_text("similarity").first.wait_for()
    _wait_until_idle(page)
    _assert_no_exception(page)
    assert page.get_by_text("Intended use").count() >= 1
    page.screenshot(path=str(screenshot_dir / "teaching.png"), full_page=True)
    page.get_by_role("button", name="See my results").click()
    page.get_by_text("Your balanced accuracy").first.wait_for()
    page.get_by_role("button", name="Download the round (CSV)").wait_for()
    _wait_until_idle(page)
    _assert_no_exception(page)
    page.goto(server)
    page.get_by_role("heading", name="Similar training cases").first.wait_for()
    page.get_by_text("similarity").first.wait_for()
    _wait_until_idle(page)
    _assert_no_exception(page)


def test_clicking_a_point_on_the_embedding_map_opens_its_case(browser_page, server):
    """The README promises "click a point to open the case"; with the chart's old "select"
    drag mode a click selected nothing (90 s, no case)."""
    page = browser_page
    page.goto(f"{server}/audit")
    page.get_by_role("heading", name="Performance and error audit").first.wait_for()
    _wait_until_idle(page)
    page.get_by_role("tab", name="Embedding map").click()
    chart = page.locator("[data-testid='stPlotlyChart']").filter(
        has=page.locator(".scatterlayer")).last
    point = chart.locator(".scatterlayer .points path").first
    point.wait_for()
    box = point.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.get_by_text("in Case review").first.wait_for(timeout=60_000)
    _wait_until_idle(page)
    _assert_no_exception(page)
    assert page.get_by_text("opened from the embedding map").count() >= 1 or \
        page.get_by_role("link", name="in Case review").count() >= 1


def test_a_reader_completes_three_cases_of_a_study(browser_page, server, screenshot_dir):
    """The local user (both roles with sign-in off) creates a 3-case study, reads every case
    (image alone, then AI support) and sees the read-out; no reference shows before the end."""
    page = browser_page
    page.goto(server)
    page.get_by_role("heading", name="Case review").first.wait_for()
    page.goto(f"{server}/reader_study")
    page.get_by_role("heading", name="Reader study").first.wait_for()
    _wait_until_idle(page)
    page.get_by_text("Create a study", exact=True).click()
    _wait_until_idle(page)
    page.get_by_label("Study name (readers join by it)").fill("Browser study")
    page.get_by_label("Number of cases (balanced over the diagnoses present)").fill("3")
    page.get_by_text("balanced per reader", exact=False).first.click()
    page.get_by_role("button", name="Create the study").click()
    page.get_by_text("created:").first.wait_for()
    _wait_until_idle(page)
    page.get_by_text("Take part", exact=True).click()
    _wait_until_idle(page)
    page.get_by_label("Study name (given by the study's administrator)").fill("Browser study")
    page.get_by_role("button", name="Join the study").click()
    page.get_by_text("student", exact=True).first.wait_for()
    page.get_by_text("student", exact=True).first.click()
    page.get_by_role("button", name="Save my experience level").click()
    for position in range(3):
        page.get_by_text(f"Case {position + 1} of 3").first.wait_for()
        _wait_until_idle(page)
        assert page.get_by_text("ISIC_").count() == 0
        assert page.get_by_text("Reference diagnosis").count() == 0
        page.get_by_text("nv — Melanocytic nevus").first.click()
        page.get_by_text("follow up", exact=True).first.click()
        page.get_by_role("button", name="Commit my answer").click()
        page.get_by_role("button", name="Commit my final answer").or_(
            page.get_by_text(f"Case {position + 2} of 3")).or_(
            page.get_by_text("You have completed")).first.wait_for()
        _wait_until_idle(page)
        if page.get_by_role("button", name="Commit my final answer").count():
            page.get_by_text("AI support from").first.wait_for()
            if position == 0 or not (screenshot_dir / "reader_study.png").exists():
                page.screenshot(path=str(screenshot_dir / "reader_study.png"), full_page=True)
            page.get_by_role("button", name="Commit my final answer").click()
            _wait_until_idle(page)
    page.get_by_text("You have completed all 3 cases").first.wait_for()
    page.get_by_text("Balanced accuracy and melanoma sensitivity").first.wait_for()
    _wait_until_idle(page)
    page.get_by_text("Switches after AI support").first.wait_for()
    assert page.locator("[data-testid='stDataFrame']").count() >= 4  # the read-out's tables
    _wait_until_idle(page)
    _assert_no_exception(page)
    page.screenshot(path=str(screenshot_dir / "reader_study_results.png"), full_page=True)


def test_at_1024_px_the_audit_tabs_and_the_model_picker_fit(browser_page, server):
    """At 1024 px the audit page's ten tabs overflowed (some out of sight) and the sidebar's
    model picker cut the model's name: every tab is now inside the window, and the picker, now
    above the tabs, shows the name whole."""
    # a second window of the same browser, 1024 px wide
    browser = browser_page.context.browser
    page = browser.new_page(viewport={"width": 1024, "height": 900})
    page.set_default_timeout(RENDER_TIMEOUT_MS)
    page.goto(server)
    page.get_by_role("heading", name="Case review").first.wait_for()
    page.goto(f"{server}/audit")
    page.get_by_role("heading", name="Performance and error audit").first.wait_for()
    _wait_until_idle(page)
    tabs = page.get_by_role("tab")
    assert tabs.count() == 10
    for index in range(tabs.count()):
        box = tabs.nth(index).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1024, \
            (tabs.nth(index).inner_text(), box)
    cut = page.evaluate("""() => {
        const box = document.querySelector(
            "[data-testid='stMain'] [data-testid='stSelectbox'] input[role='combobox']");
        if (!box) return "no model picker above the tabs";
        return box.scrollWidth > box.clientWidth + 1 ? box.value : "";
    }""")
    assert cut == "", f"truncated in the model picker: {cut}"
    page.screenshot(path=str(Path(os.environ.get("E2E_SCREENSHOTS") or "/tmp")
                             / "audit_1024.png"))
    page.close()


@pytest.fixture
def fresh_server(weights_folder, tmp_path_factory):
    """A server no browser has visited yet (sign-in off)."""
    yield from _serve(weights_folder, tmp_path_factory.mktemp("fresh_server"))


def test_a_link_to_a_page_opens_that_page_on_a_fresh_server(browser_page, fresh_server):
    """The first visit of a fresh server runs pages/audit.py without dashboard.py; the page
    sends it through the entry script, which must then open the page asked for, not the
    default one (a bookmark or a shared link after a restart)."""
    page = browser_page
    page.goto(f"{fresh_server}/audit")
    page.get_by_role("heading", name="Performance and error audit").first.wait_for()
    _wait_until_idle(page)
    _assert_no_exception(page)
    assert page.get_by_role("heading", name="Case review").count() == 0
    assert page.url.rstrip("/").endswith("/audit")


@pytest.fixture(scope="module")
def signed_in_server(weights_folder, tmp_path_factory):
    """The dashboard with sign-in on: alice (admin) and bob (reviewer)."""
    from app import auth

    folder = tmp_path_factory.mktemp("auth_server")
    config = auth.make_auth_config([
        {"username": "alice", "password": "alice-password", "role": "admin"},
        {"username": "bob", "password": "bob-password", "role": "reviewer"}])
    path = auth.write_auth_config(folder / "auth.yaml", config)
    yield from _serve(weights_folder, folder, LESIONLIB_AUTH_CONFIG=str(path))


def test_pages_need_sign_in_and_reviewers_cannot_export(browser_page, signed_in_server):
    """The first visit of a fresh server goes straight to /audit: Streamlit would run
    pages/audit.py without dashboard.py (old pages/ discovery) unless the page guards itself."""
    page = browser_page
    for path in ("audit", "feedback", "compare"):
        page.goto(f"{signed_in_server}/{path}")
        page.get_by_text("Sign in to use the lesion review dashboard").first.wait_for()
        _wait_until_idle(page)
        assert page.get_by_role("heading", name="Performance and error audit").count() == 0
        assert page.get_by_role("heading", name="Reviewer feedback").count() == 0
        assert page.get_by_role("heading", name="Compare models").count() == 0
    page.goto(f"{signed_in_server}/feedback")
    page.get_by_role("textbox", name="Username").fill("bob")
    page.get_by_role("textbox", name="Password").fill("bob-password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Reviewer feedback").first.wait_for()
    page.get_by_text("for administrators").first.wait_for()
    _wait_until_idle(page)
    _assert_no_exception(page)
    assert page.get_by_text("Export these records").count() == 0
