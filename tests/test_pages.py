"""Every dashboard page through Streamlit's AppTest, on the tiny weights fixture.

Pages are reached the way a user reaches them: from ``dashboard.py`` with ``switch_page``. Each
test points ``LESIONLIB_WEIGHTS`` at tiny real models (with fake stored predictions) and
``LESIONLIB_FEEDBACK_URL`` at a fresh SQLite file; "no dataset" also hides ../shared/data.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import SAMPLE_DIR, build_tiny_weights
from page_fixtures import add_fake_predictions, use_page_environment

REPO_ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = str(REPO_ROOT / "dashboard.py")
PAGES = ("case_review", "compare", "explorer", "audit", "feedback", "models")
TIMEOUT_S = 180
SAMPLE_FILE = "ISIC_0024904.jpg"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def page_weights(tmp_path_factory) -> Path:
    folder = build_tiny_weights(tmp_path_factory.mktemp("page_weights"))
    add_fake_predictions(folder)
    return folder


@pytest.fixture
def app_env(page_weights, tmp_path, monkeypatch):
    """Tiny weights, an empty feedback database, sign-in off, the shared dataset as it is."""
    use_page_environment(monkeypatch, page_weights, tmp_path)
    return tmp_path


@pytest.fixture
def no_dataset(app_env, tmp_path, monkeypatch):
    """As on a fresh install: LESIONLIB_DATA empty and no ../shared/data."""
    import lesionlib.data

    empty = tmp_path / "no_data"
    empty.mkdir()
    monkeypatch.setenv("LESIONLIB_DATA", str(empty))
    monkeypatch.setattr(lesionlib.data, "SHARED_DATA", empty)
    return empty


def open_page(page: str) -> AppTest:
    app = AppTest.from_file(DASHBOARD, default_timeout=TIMEOUT_S)
    app.run()
    assert not app.exception, app.exception
    # AppTest drops the frame's sidebar elements after switch_page (a real browser keeps
    # them, see test_e2e_browser.py), so the notice is checked on the first run.
    notice = "\n".join(str(caption.value) for caption in app.sidebar.caption)
    assert "not a diagnosis" in notice and "CC BY-NC 4.0, from HAM10000" in notice
    app.switch_page(f"pages/{page}.py")
    app.run()
    return app


def texts(app: AppTest) -> str:
    parts = []
    for kind in ("title", "subheader", "markdown", "caption", "info", "warning", "error",
                 "success"):
        parts += [str(element.value) for element in getattr(app, kind)]
    parts += [f"{metric.label}: {metric.value}" for metric in app.metric]
    return "\n".join(parts)


def captions(app: AppTest) -> str:
    return "\n".join(str(caption) for image in app.image for caption in image.captions)


def assert_ok(app: AppTest) -> None:
    assert not app.exception, [exception.message for exception in app.exception]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_dataset(no_dataset, page):
    app = open_page(page)
    assert_ok(app)
    content = texts(app)
    assert app.title, f"{page} has no title"
    if page == "audit":
        assert "Select a row of the table" in content
        select_error_row(app, 0)
        assert_ok(app)
        assert "not available here" in texts(app)  # the error browser's image needs the dataset
    if page == "explorer":
        assert "only the bundled sample images" in content


@pytest.mark.parametrize("page", ("explorer", "audit"))
def test_dataset_pages_with_default_data(app_env, page):
    app = open_page(page)
    assert_ok(app)
    assert app.title


def test_case_review_shows_prediction_heatmap_and_model(no_dataset):
    app = open_page("case_review")
    assert_ok(app)
    content = texts(app)
    assert "ensemble.ham10000" in content and "version 1.0.0" in content
    assert "Intended use" in content
    assert "Top diagnosis" in content and "Calibrated confidence" in content
    assert "operating threshold" in content
    assert "Quality check" in content or "no warning" in content
    assert len(app.get("plotly_chart")) == 1
    assert len(app.image) >= 3  # the image, then original + overlay
    for method in ("Grad-CAM++", "Faster-Score-CAM"):
        app.selectbox(key="case_review_method").set_value(method)
        class_box = next(box for box in app.selectbox
                         if box.key and box.key.startswith("case_review_class_"))
        class_box.set_value("mel")
        app.slider(key="case_review_opacity").set_value(0.8)
        app.run()
        assert_ok(app)
        assert f"{method} for mel" in captions(app)
    app.selectbox(key="case_review_model").set_value("tiny0.test").run()
    assert_ok(app)
    assert "tiny0.test" in texts(app)


def test_case_review_upload(no_dataset):
    app = open_page("case_review")
    app.radio(key="case_review_source").set_value("Upload").run()
    assert_ok(app)
    app.file_uploader[0].set_value(("notes.jpg", b"this is not an image", "image/jpeg"))
    app.run()
    assert_ok(app)
    assert any("cannot be reviewed" in error.value for error in app.error)
    image = (SAMPLE_DIR / SAMPLE_FILE).read_bytes()
    app.file_uploader[0].set_value(("lesion.jpg", image, "image/jpeg"))
    app.run()
    assert_ok(app)
    assert not app.error
    assert "Top diagnosis" in texts(app)


def test_second_look_recomputes_nothing(no_dataset, monkeypatch):
    from lesionlib import explain, registry

    app = open_page("case_review")
    app.selectbox(key="case_review_sample").set_value("ISIC_0025250.jpg").run()
    assert_ok(app)
    calls = []
    original_predict = registry.SingleModel.predict_framed  # every prediction path runs it
    original_map = explain.Explainer.compute_maps  # compute_map and ensemble_map use it
    monkeypatch.setattr(registry.SingleModel, "predict_framed",
                        lambda self, *args, **kwargs: calls.append("predict")
                        or original_predict(self, *args, **kwargs))
    monkeypatch.setattr(explain.Explainer, "compute_maps",
                        lambda self, *args, **kwargs: calls.append("map") or original_map(
                            self, *args, **kwargs))
    app.run()
    app.slider(key="case_review_opacity").set_value(0.3).run()
    assert_ok(app)
    assert calls == []


def test_feedback_round_trip(no_dataset):
    app = open_page("case_review")
    app.radio(key="case_review_source").set_value("Upload").run()
    app.file_uploader[0].set_value(("lesion.jpg", (SAMPLE_DIR / SAMPLE_FILE).read_bytes(),
                                    "image/jpeg")).run()
    form_key = next(radio.key for radio in app.radio if radio.key.endswith("_verdict"))
    prefix = form_key.removesuffix("_verdict")
    app.radio(key=form_key).set_value("Disagree")
    app.selectbox(key=f"{prefix}_corrected").set_value("mel")
    app.text_area(key=f"{prefix}_note").set_value("Atypical network at 3 o'clock")
    app.button[0].click().run()
    assert_ok(app)
    assert any("Feedback saved" in success.value for success in app.success)

    restarted = open_page("feedback")  # a new session: only the database remembers
    assert_ok(restarted)
    records = restarted.dataframe[0].value
    assert len(records) == 1
    record = records.iloc[0]
    assert record["corrected_class"] == "mel" and not record["agree"]
    assert record["note"].startswith("Atypical network")
    assert record["model_id"] == "ensemble.ham10000" and record["source"] == "case_review"
    assert record["has_image"]  # an upload: its metadata-free PNG is kept
    assert "Export these records (CSV)" in [button.label for button in
                                            restarted.get("download_button")]
    from lesionlib.feedback import FeedbackStore

    exported = FeedbackStore().export_csv().decode()
    assert "Atypical network" in exported


def test_feedback_failure_keeps_the_form(no_dataset, monkeypatch, tmp_path):
    monkeypatch.setenv("LESIONLIB_FEEDBACK_URL",
                       f"sqlite:///{tmp_path / 'missing' / 'folder' / 'feedback.db'}")
    app = open_page("case_review")
    form_key = next(radio.key for radio in app.radio if radio.key.endswith("_verdict"))
    prefix = form_key.removesuffix("_verdict")
    app.text_area(key=f"{prefix}_note").set_value("keep me")
    app.button[0].click().run()
    assert_ok(app)
    assert any("NOT saved" in error.value for error in app.error)
    assert app.text_area(key=f"{prefix}_note").value == "keep me"


def test_disagreeing_without_correction_asks_for_it(no_dataset):
    app = open_page("case_review")
    form_key = next(radio.key for radio in app.radio if radio.key.endswith("_verdict"))
    app.radio(key=form_key).set_value("Disagree")
    app.button[0].click().run()
    assert_ok(app)
    assert any("choose the corrected diagnosis" in warning.value for warning in app.warning)


def error_table(app: AppTest):
    return next(table for table in app.dataframe
                if table.key and table.key.startswith("audit_errors_"))


def select_error_row(app: AppTest, row: int) -> AppTest:
    """Click a row of the error browser's table (AppTest writes the selection state)."""
    app.session_state[error_table(app).key] = {"selection": {"rows": [row], "columns": []}}
    return app.run()


def test_audit_error_browser_and_feedback(app_env):
    app = open_page("audit")
    assert_ok(app)
    content = texts(app)
    assert "misclassified images" in content
    assert "Every model's stored output" not in content  # no case until a row is clicked
    second = error_table(app).value.iloc[1]["image_id"]
    select_error_row(app, 1)
    assert_ok(app)
    content = texts(app)
    assert f"Case {second}" in content and "Every model's stored output" in content
    assert "Grad-CAM for" in captions(app)  # its heatmap
    link = next(link.proto for link in app.get("page_link") if second in link.proto.label)
    assert f"case={second}" in link.query_string and "case_review" in link.page
    assert "Export the error list (CSV)" in [button.label for button in
                                             app.get("download_button")]
    app.multiselect(key="audit_true").set_value(["nv"]).run()
    assert_ok(app)
    app.selectbox(key="audit_set").set_value("isic2017").run()
    assert_ok(app)
    app.selectbox(key="audit_set").set_value("ham10000_test").run()
    app.multiselect(key="audit_true").set_value([]).run()
    select_error_row(app, 0)
    form_key = next(radio.key for radio in app.radio if radio.key.endswith("_verdict"))
    assert app.radio(key=form_key).value is None  # a known error: no "Agree" by default
    app.button[0].click().run()
    assert_ok(app)
    assert any("Choose Agree or Disagree" in warning.value for warning in app.warning)
    assert not app.success
    app.radio(key=form_key).set_value("Agree")
    app.button[0].click().run()
    assert_ok(app)
    assert any("Feedback saved" in success.value for success in app.success)
    prefix = form_key.removesuffix("_verdict")
    app.radio(key=form_key).set_value("Disagree")
    app.selectbox(key=f"{prefix}_corrected").set_value("mel")
    app.button[0].click().run()
    assert_ok(app)
    assert any("updates your earlier review" in success.value for success in app.success)
    from lesionlib.feedback import FeedbackStore

    store = FeedbackStore()
    current = store.records()
    assert list(current["source"]) == ["error_browser"]  # one review, not two contradicting
    assert not current.iloc[0]["agree"] and current.iloc[0]["revision"] == 2
    assert len(store.records(include_superseded=True)) == 2


def test_audit_subgroups_have_intervals_in_age_order(no_dataset):
    from lesionlib.subgroups import AGE_BAND_ORDER

    app = open_page("audit")
    assert_ok(app)
    table = next(frame.value for frame in app.dataframe if "Group" in frame.value.columns)
    groups = list(table["Group"])
    assert groups == [band for band in AGE_BAND_ORDER if band in groups]
    scored = table[table["Accuracy"] != ""]
    interval = r"\([01]\.\d\d–[01]\.\d\d\)"
    assert not scored.empty and scored["Accuracy"].str.contains(interval).all()
    assert "95% bootstrap confidence intervals" in texts(app)
    app.selectbox(key="audit_subgroup").set_value("sex").run()
    assert_ok(app)


def test_audit_roc_marks_the_operating_point(no_dataset):
    app = open_page("audit")
    assert_ok(app)
    assert "black cross marks the melanoma operating threshold" in texts(app)
    roc = next(chart for chart in app.get("plotly_chart") if "operating point" in
               chart.proto.spec)
    assert "melanoma operating point" in roc.proto.spec


def test_compare_shows_agreement_and_test_record(no_dataset):
    app = open_page("compare")
    assert_ok(app)
    content = texts(app)
    assert "agree" in content.lower()
    assert "images on which the models disagree" in content
    assert len(app.get("plotly_chart")) >= 4


def test_refused_model_is_a_message_and_others_work(page_weights, app_env, tmp_path,
                                                   monkeypatch):
    tampered = tmp_path / "tampered"
    shutil.copytree(page_weights, tampered)
    with open(tampered / "tiny1.test" / "model.keras", "ab") as handle:
        handle.write(b"tampered")
    monkeypatch.setenv("LESIONLIB_WEIGHTS", str(tampered))
    app = open_page("case_review")
    assert_ok(app)
    assert any("cannot be used" in error.value and "sha256" in error.value
               for error in app.error)
    app.selectbox(key="case_review_model").set_value("tiny0.test").run()
    assert_ok(app)
    assert "Top diagnosis" in texts(app)


def test_no_models_says_what_is_needed(app_env, tmp_path, monkeypatch):
    empty = tmp_path / "no_weights"
    empty.mkdir()
    monkeypatch.setenv("LESIONLIB_WEIGHTS", str(empty))
    for page in ("case_review", "compare", "audit", "models"):
        app = open_page(page)
        assert_ok(app)
        assert any("No usable model" in error.value for error in app.error), page


@pytest.fixture
def sign_in_on(app_env, tmp_path, monkeypatch):
    from app import auth

    config = auth.make_auth_config([
        {"username": "alice", "password": "alice-password", "role": "admin"},
        {"username": "bob", "password": "bob-password", "role": "reviewer"}])
    path = auth.write_auth_config(tmp_path / "auth.yaml", config)
    monkeypatch.setenv(auth.AUTH_CONFIG_ENV, str(path))
    return path


@pytest.mark.parametrize("page", ("audit", "feedback"))
def test_signed_out_user_sees_no_page(sign_in_on, page):
    app = AppTest.from_file(DASHBOARD, default_timeout=TIMEOUT_S)
    app.run()
    assert_ok(app)
    app.switch_page(f"pages/{page}.py")
    app.run()
    assert_ok(app)
    assert not app.title and not app.dataframe and not app.get("download_button")
    # the gate's sign-in form, or the page's own guard when reached without the gate
    assert any("Sign in" in info.value for info in app.info) or any(
        "sign in" in error.value for error in app.error)


def test_reviewer_cannot_export_feedback(no_dataset, monkeypatch):
    from app import auth

    reviewer = auth.User(username="bob", display_name="Bob", role="reviewer")
    monkeypatch.setattr(auth, "gate", lambda store=None: reviewer)
    app = open_page("feedback")
    assert_ok(app)
    assert "You see your own feedback (bob)" in texts(app)
    assert "for administrators" in texts(app)
    assert not app.get("download_button")


# --------------------------------------------------- trust: what the browser may and may not see

def shown(markdown: str) -> str:
    """What a reader sees of escaped Markdown (user-supplied text is backslash-escaped; the
    word joiners that keep it from being a link are invisible)."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def test_every_heatmap_has_a_legend_and_names_its_layer(no_dataset):
    app = open_page("case_review")
    assert_ok(app)
    overlay = next(caption for caption in captions(app).splitlines()
                   if caption.startswith("Grad-CAM for "))
    assert "(ensemble.ham10000)" in overlay
    assert "tiny0.test: `top_activation`" in overlay and "tiny1.test" in overlay
    assert "blue = low → red = high" in captions(app)
    app.selectbox(key="case_review_model").set_value("tiny0.test").run()
    assert "from the model's final image features (layer `top_activation`)" in captions(app)
    assert "convolution at or before" not in captions(app)  # plain words, the layer for experts


def test_over_limit_upload_is_refused_visibly_and_clears_the_old_result(no_dataset):
    from app import ui

    app = open_page("case_review")
    app.radio(key="case_review_source").set_value("Upload").run()
    app.file_uploader[0].set_value(("lesion.jpg", (SAMPLE_DIR / SAMPLE_FILE).read_bytes(),
                                    "image/jpeg")).run()
    assert "Top diagnosis" in texts(app)
    too_big = b"\xff\xd8" + bytes(ui.UPLOAD_LIMIT_MB * 1_000_000 + 10)
    app.file_uploader[0].set_value(("huge.jpg", too_big, "image/jpeg")).run()
    assert_ok(app)
    assert any("huge.jpg is 20.0 MB; the limit is 20 MB" in shown(error.value)
               for error in app.error)
    assert "Top diagnosis" not in texts(app) and not app.get("plotly_chart")
    truncated = (SAMPLE_DIR / SAMPLE_FILE).read_bytes()[:3000]
    app.file_uploader[0].set_value(("cut.jpg", truncated, "image/jpeg")).run()
    assert_ok(app)
    assert any("the file is damaged or incomplete" in error.value for error in app.error)
    assert not any("Error" in error.value or "bytes not processed" in error.value
                   for error in app.error)


def test_uploaded_file_names_are_text_not_markdown(no_dataset):
    app = open_page("case_review")
    app.radio(key="case_review_source").set_value("Upload").run()
    hostile = "![t](https://example.org/t.png) :red[x].jpg"
    app.file_uploader[0].set_value((hostile, b"not an image", "image/jpeg")).run()
    assert_ok(app)
    errors = "\n".join(error.value for error in app.error)
    assert "cannot be reviewed" in errors
    assert "](" not in errors and "![" not in errors and ":red[" not in errors
    app.file_uploader[0].set_value((hostile, (SAMPLE_DIR / SAMPLE_FILE).read_bytes(),
                                    "image/jpeg")).run()
    assert_ok(app)
    assert "t.png- -red-x-.jpg (200x150 px)" in captions(app)


def test_reviewers_do_not_see_where_the_database_is(no_dataset, monkeypatch):
    from app import auth

    reviewer = auth.User(username="_bob_", display_name="Bob", role="reviewer")
    monkeypatch.setattr(auth, "gate", lambda store=None: reviewer)
    app = open_page("feedback")
    assert_ok(app)
    content = texts(app)
    assert "feedback.db" not in content and str(no_dataset.parent) not in content
    assert "You see your own feedback (\\_bob\\_)" in content  # the username as text


def test_admins_see_where_the_database_is(no_dataset):
    app = open_page("feedback")
    assert_ok(app)
    assert "feedback.db" in shown(texts(app))


def test_an_unexpected_error_is_a_notice_without_traceback():
    def page_script():
        from app import ui

        class BrokenPage:
            title = "Broken"

            def run(self):
                raise RuntimeError("/srv/secret/path exploded")

        ui.run_page(BrokenPage())

    app = AppTest.from_function(page_script, default_timeout=60)
    app.run()
    assert not app.exception
    errors = "\n".join(error.value for error in app.error)
    assert "Something went wrong on this page" in errors and "reference" in errors
    assert "/srv/secret/path" not in errors and "RuntimeError" not in errors


def test_server_settings_hide_error_details_and_developer_tools():
    import tomllib

    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"
    assert config["client"]["toolbarMode"] == "viewer"  # no Deploy / Rerun / Clear cache


def test_error_messages_are_markdown_safe_and_leave_out_server_folders(tmp_path, monkeypatch):
    from app import ui
    from lesionlib.cards import CardError

    monkeypatch.setenv("LESIONLIB_WEIGHTS", str(tmp_path))
    message = ui.error_message(CardError(f"{tmp_path}/m.test/card.json: no model card."))
    assert str(tmp_path) not in message
    assert shown(message) == "the weights folder: m.test/card.json: no model card."
    assert ui.error_message(KeyError("Unknown model 'x' [y](z)")) == \
        "Unknown model \\'x\\' \\[y\\]\\(z\\)"


# ------------------------------------------------------------------ case review: any dataset image

def open_dataset_case(app: AppTest, image_id: str) -> AppTest:
    app.radio(key="case_review_source").set_value("Dataset image").run()
    return app.text_input(key="case_review_dataset_id").input(image_id).run()


def test_case_review_opens_any_dataset_image_by_id(app_env):
    app = open_page("case_review")
    open_dataset_case(app, "isic_0024306")  # a HAM10000 training image, not a sample
    assert_ok(app)
    assert "Top diagnosis" in texts(app)
    assert "ISIC_0024306.jpg" in captions(app)
    assert any("training split" in warning.value for warning in app.warning)
    open_dataset_case(app, "ISIC_9999999")
    assert_ok(app)
    assert any("ISIC_9999999 is not an image of the datasets present here" in shown(error.value)
               for error in app.error)
    assert "Top diagnosis" not in texts(app)
    open_dataset_case(app, "../../etc/passwd")
    assert any("is not an image id" in shown(error.value) for error in app.error)


def test_case_review_by_id_without_the_dataset_says_so(no_dataset):
    app = open_page("case_review")
    open_dataset_case(app, "ISIC_0024306")
    assert_ok(app)
    assert any("No dataset folder is present here" in error.value for error in app.error)


def test_a_link_from_the_error_browser_opens_the_case(app_env):
    app = AppTest.from_file(DASHBOARD, default_timeout=TIMEOUT_S)
    app.query_params["case"] = "ISIC_0024306"
    app.query_params["model"] = "tiny0.test"
    app.run()
    app.switch_page("pages/case_review.py")
    app.run()
    assert_ok(app)
    assert app.radio(key="case_review_source").value == "Dataset image"
    assert "ISIC_0024306.jpg" in captions(app) and "tiny0.test" in texts(app)


def test_upload_keeps_its_file_name_as_the_case_reference(no_dataset):
    app = open_page("case_review")
    app.radio(key="case_review_source").set_value("Upload").run()
    app.file_uploader[0].set_value(("clinic 12_left arm.jpg", (SAMPLE_DIR / SAMPLE_FILE)
                                    .read_bytes(), "image/jpeg")).run()
    assert_ok(app)
    form_key = next(radio.key for radio in app.radio if radio.key.endswith("_verdict"))
    app.radio(key=form_key).set_value("Agree")
    app.button[0].click().run()
    assert_ok(app)
    from lesionlib.feedback import FeedbackStore

    assert list(FeedbackStore().records()["case_id"]) == ["clinic 12_left arm.jpg"]


def test_a_model_never_evaluated_is_marked_before_its_output(tmp_path, monkeypatch):
    """A packaged model that `evaluate` never calibrated must not be offered as "calibrated":
    Case review says so before the output, and labels the confidence and threshold plainly."""
    weights = build_tiny_weights(tmp_path / "weights")  # packaged, never evaluated
    use_page_environment(monkeypatch, weights, tmp_path)
    app = open_page("case_review")
    assert not app.exception, app.exception
    content = texts(app)
    assert "Not evaluated" in content and "has no calibration" in content
    assert "Calibrated confidence" not in content
    assert "Confidence (NOT calibrated)" in content
    assert "not chosen on validation" in content
    warnings = [str(warning.value) for warning in app.warning]
    assert any("Not evaluated" in text for text in warnings)


@pytest.mark.parametrize("text", ["https://evil.example/login", "go to www.evil.example",
                                  "mail me@evil.example", "HTTP://EVIL.EXAMPLE"])
def test_user_supplied_text_is_never_a_link(text):
    """GFM auto-links URLs, www. names and e-mail addresses even when their punctuation is
    escaped: plain() splits each trigger with an invisible word joiner."""
    import re

    from app import ui

    made_safe = ui.plain(text)
    unescaped = re.sub(r"\\(.)", r"\1", made_safe)
    assert "://" not in unescaped and not re.search("www[.]", unescaped, re.IGNORECASE)
    assert not re.search(r"@\w", unescaped)
    assert unescaped.replace("\u2060", "") == text  # reads the same


def test_a_case_link_to_a_url_shows_no_link(app_env):
    app = AppTest.from_file(DASHBOARD, default_timeout=TIMEOUT_S)
    app.query_params["case"] = "https://evil.example/login"
    app.run()
    app.switch_page("pages/case_review.py")
    app.run()
    assert_ok(app)
    errors = [str(error.value) for error in app.error]
    assert any("evil" in error for error in errors)
    assert not any("://" in error or "](" in error for error in errors)


def test_an_uploaded_training_image_is_recognised_by_its_bytes(app_env):
    """Opened by id an ISIC 2017 training image was marked "in a training split"; uploaded
    under another name it was not."""
    import pandas as pd

    import lesionlib.data

    isic = lesionlib.data.SHARED_DATA / "isic2017"
    if not (isic / "labels.csv").is_file():
        pytest.skip("needs ../shared/data/isic2017")
    labels = pd.read_csv(isic / "labels.csv")
    row = labels[labels["split"] == "train"].iloc[0]
    app = open_page("case_review")
    app.radio(key="case_review_source").set_value("Upload").run()
    app.file_uploader[0].set_value(("renamed-by-the-clinic.jpg", (isic / row["file"]).read_bytes(),
                                    "image/jpeg")).run()
    assert_ok(app)
    assert any("training split" in warning.value for warning in app.warning)


def test_pre_filled_case_details_are_not_saved_as_typed_by_the_reviewer(no_dataset):
    """A sample's age, sex and site are pre-filled from its record; saved untouched they are
    noted as the dataset's, and only a changed value as the reviewer's."""
    from lesionlib.feedback import FeedbackStore

    app = open_page("case_review")
    assert_ok(app)
    submit = next(button for button in app.button
                  if "FormSubmitter:case_review_feedback" in str(button.key))
    submit.click().run()
    assert_ok(app)
    note = FeedbackStore().records()["note"].iloc[-1]
    assert "from the dataset's record" in note and "entered by the reviewer" not in note
    site = next(box for box in app.text_input if str(box.key).startswith("case_site_"))
    site.input("left forearm").run()
    next(button for button in app.button
         if "FormSubmitter:case_review_feedback" in str(button.key)).click().run()
    note = FeedbackStore().records()["note"].iloc[-1]
    assert "entered by the reviewer: body_site=left forearm" in note
