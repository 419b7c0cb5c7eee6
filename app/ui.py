"""Drawing helpers shared by the dashboard pages (no caching here: see ``app.resources``).

Each helper draws one recognisable piece of the interface (a model picker, a prediction panel, a
heatmap panel, the feedback form) from plain data returned by ``lesionlib`` and
``app.resources``. Errors a user can cause are shown as messages, never as tracebacks.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import uuid
from pathlib import Path

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from streamlit.errors import StreamlitAPIException

from app import faithfulness_panels, resources
from lesionlib import explain, imaging, views
from lesionlib.attribution import attribution_note
from lesionlib.cards import CardError
from lesionlib.classes import CLASS_LONG_NAMES, CLASS_NAMES
from lesionlib.database import DatabaseError
from lesionlib.feedback import FeedbackStoreError
from lesionlib.plain_text import escape_markdown

DISCLAIMER = "Decision support for review and teaching — not a diagnosis"
NO_MODELS = ("No usable model was found in `{folder}`. Install the shipped models into "
             "`weights/` (see the README) or set `LESIONLIB_WEIGHTS` to a folder of model "
             "folders, each with a `card.json`.")
MODEL_ERRORS = (KeyError, CardError, OSError)
UPLOAD_LIMIT_MB = 20  # refused here, visibly; server.maxUploadSize (100) is the transport limit
UPLOAD_TYPES = ("jpg", "jpeg", "png", "dcm")
DEEP_LINK_KEY = "app_ui_deep_link"  # (page file, query) asked for before the entry script ran
_STORE_LOCATION = re.compile(r" in the feedback database at .*?: ")
logger = logging.getLogger(__name__)


def class_label(name: str) -> str:
    return f"{name} — {CLASS_LONG_NAMES.get(name, name)}"


def sidebar_notice() -> None:
    """The lines every page carries: what the tool is for, and the licence and sources of the
    installed models (from their cards)."""
    st.sidebar.caption(f"**{DISCLAIMER}**")
    try:
        cards = list(resources.current_catalogue().cards.values())
    except MODEL_ERRORS:  # an unreadable weights folder: the pages say so; cite HAM10000 alone
        cards = []
    st.sidebar.caption(attribution_note(cards))


def may_show_menu() -> bool:
    """Whether to show the page menu: sign-in is off, or this session has signed in."""
    from app import auth

    return (not os.environ.get(auth.AUTH_CONFIG_ENV, "").strip()
            or st.session_state.get("authentication_status") is True)


def follow_deep_link() -> None:
    """Open the page a visitor asked for before ``require_user`` sent them through the entry
    script (a link such as ``/audit?...`` opened on a fresh server), once they are signed in.
    Call from ``dashboard.py`` after the sign-in gate."""
    target = st.session_state.pop(DEEP_LINK_KEY, None)
    if target is not None:
        page, query = target
        st.switch_page(page, query_params=query or None)


def current_user():
    return st.session_state.get("user")


def require_user():
    """The signed-in user; a page reached without ``dashboard.py``'s gate never renders.

    Until a session of a fresh server has run ``st.navigation``, Streamlit serves a URL such as
    ``/audit`` by running ``pages/audit.py`` directly (its old ``pages/`` discovery). Such a
    visitor is sent through the entry script (and its sign-in gate) instead, and the page and
    query they asked for are kept for ``follow_deep_link`` to open once they are through.
    """
    user = current_user()
    if user is None:
        page_file = sys._getframe(1).f_globals.get("__file__")  # the page that called this
        if page_file and Path(page_file).parent.name == "pages":
            st.session_state[DEEP_LINK_KEY] = (f"pages/{Path(page_file).name}",
                                               dict(st.query_params))
        try:
            st.switch_page("dashboard.py")
        except StreamlitAPIException:  # dashboard.py is not a page here (already routed)
            pass
        st.error("Open the dashboard with `streamlit run dashboard.py` and sign in.")
        st.stop()
    return user


def reviewer_name(user=None) -> str:
    """A display name for the signed-in user, whatever shape ``app.auth`` gives it."""
    user = user if user is not None else current_user()
    if user is None:
        return "local"
    if isinstance(user, str):
        return user
    if isinstance(user, dict):
        return str(user.get("username") or user.get("name") or user.get("email") or "local")
    for attribute in ("username", "name", "email"):
        if getattr(user, attribute, None):
            return str(getattr(user, attribute))
    return str(user)


def is_admin(user=None) -> bool:
    """Whether the signed-in user is an administrator (the local user is, with sign-in off)."""
    from app import auth

    user = user if user is not None else current_user()
    return user is not None and auth.is_admin(user)


def count(number: int, noun: str) -> str:
    """``1 record``, ``2 records``, ``1,508 images``: a number with its noun in plain English."""
    return f"{number:,} {noun if number == 1 else noun + 's'}"


def plain(text) -> str:
    """``text`` made safe for Streamlit Markdown (``st.markdown``, ``st.error``, captions):
    shown as typed, never as a link, image or icon. For file names, notes, usernames."""
    return escape_markdown(text)


def error_message(error: Exception) -> str:
    """What went wrong, in the exception's own words, made safe for Markdown.

    The library's messages are written for reviewers and name the file or model they concern
    (the server's own folders are left out); ``KeyError`` quotes its message, so its first
    argument is used.
    """
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return plain(without_server_paths(text))


def without_server_paths(text: str) -> str:
    """``text`` with the server's weights and code folders named, not spelled out."""
    for folder, name in ((resources.weights_dir(), "the weights folder"),
                         (str(resources.REPO_ROOT), "the app folder")):
        text = text.replace(folder.rstrip("/") + "/", f"{name}: ").replace(folder, name)
    return text


def store_error_message(error: Exception, admin: bool | None = None) -> str:
    """A feedback-store error for the signed-in user: administrators see where the database
    is; reviewers see what failed and why, without the server's path or database URL."""
    admin = is_admin() if admin is None else admin
    if admin or not isinstance(error, (DatabaseError, KeyError)):
        return error_message(error)
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    text = _STORE_LOCATION.sub(" in the feedback database: ", text, count=1)
    try:
        location = resources.feedback_store().location
    except (FeedbackStoreError, ValueError):
        location = None
    return plain(text.replace(location, "the feedback database") if location else text)


def run_page(navigation) -> None:
    """Run the chosen page; an unexpected error is logged in full and shown as a short notice.

    The reviewer sees what happened in plain words and a reference to quote; the traceback,
    with server paths, stays in the server log (``client.showErrorDetails = "none"`` covers
    anything that escapes). Streamlit's own stop/rerun signals are not exceptions and pass.
    """
    try:
        navigation.run()
    except Exception:  # noqa: BLE001 - the last line of defence for the browser
        reference = uuid.uuid4().hex[:8]
        logger.exception("Unexpected error on page %r (reference %s)",
                         getattr(navigation, "title", "?"), reference)
        st.error(f"Something went wrong on this page, and it stopped here. Try again; if it "
                 f"happens again, give an administrator the reference **{reference}** (the "
                 "details are in the server log).")


# ----------------------------------------------------------------------------- models

def show_catalogue_problems(cards) -> None:
    for folder, reason in cards.problems.items():
        st.warning(f"Model folder `{folder}` was not loaded: {reason}")


def model_picker(label: str = "Model", key: str = "model_choice", container=st,
                 seven_class_only: bool = False) -> str | None:
    """A select box over the valid models (default: the ensemble); ``None`` if there are none.

    ``seven_class_only``: leave out binary melanoma models (for pages that need a diagnosis
    among the seven classes: the quiz, the reader study). The choice is remembered in
    ``st.session_state["model_id"]`` across pages.
    """
    cards = resources.current_catalogue()
    if not cards.cards:
        st.error(NO_MODELS.format(folder=resources.weights_dir()))
        show_catalogue_problems(cards)
        return None
    options = sorted(model_id for model_id, card in cards.cards.items()
                     if not (seven_class_only and card.is_binary))
    if not options:
        st.error("This page needs a seven-class model, and only binary melanoma models are "
                 "installed.")
        return None
    if seven_class_only and len(options) < len(cards.cards):
        container.caption("Binary melanoma models are left out here: this page needs a "
                          "diagnosis among the seven classes.")
    remembered = st.session_state.get("model_id")
    default = remembered if remembered in options else cards.default_id()
    short = {option: f"{cards.cards[option].name} v{cards.cards[option].version}"
             for option in options}  # fits a narrow box; the page names the id beside it
    if len(set(short.values())) < len(short):
        short = {option: cards.cards[option].label for option in options}  # the full name
    model_id = container.selectbox(label, options, index=options.index(default), key=key,
                                   format_func=short.get,
                                   help="Model ids and versions: see the Models page.")
    st.session_state["model_id"] = model_id
    return model_id


def model_identity(card) -> None:
    """Model id, version and intended use: always visible beside any output."""
    st.caption(f"Model **{card.id}** · version {card.version} · {card.name}"
               + (" · binary: melanoma vs the rest" if card.is_binary else ""))
    st.info(f"Intended use: {card.intended_use}", icon="ℹ️")


# ----------------------------------------------------------------------------- cases

CASE_SOURCES = ("Sample image", "Dataset image", "Upload")


def case_picker(key: str = "case") -> resources.CaseImage | None:
    """Pick a bundled sample, a dataset image by id, or upload a JPEG/PNG; returns the decoded
    case or ``None``.

    An over-limit or unreadable upload, or an unknown id, shows why in a message and returns
    ``None``, so the page stops and no earlier result stays on screen.
    """
    source = st.radio("Image", CASE_SOURCES, horizontal=True, key=f"{key}_source")
    if source == "Dataset image":
        return case_from_dataset_id(st.text_input(
            "Image id (HAM10000, ISIC 2017 or PH2)", key=f"{key}_dataset_id",
            placeholder="ISIC_0024306", max_chars=40))
    if source == "Upload":
        upload = st.file_uploader(
            f"Dermoscopic image (JPEG, PNG or DICOM, up to {UPLOAD_LIMIT_MB} MB)",
            type=list(UPLOAD_TYPES), key=f"{key}_upload")
        if upload is None:
            st.info("Upload a dermoscopic image, or choose a sample image.")
            return None
        return case_from_upload(upload.name, upload.getvalue())
    samples = resources.available_samples()
    if samples.empty:
        st.warning("No sample images found in `sample_images/`.")
        return None
    files = list(samples["file"])
    file = st.selectbox("Sample image (HAM10000 test split)", files, key=f"{key}_sample")
    try:
        return resources.case_from_file(resources.SAMPLE_DIR / file, "sample")
    except imaging.ImageLoadError as error:
        st.error(error_message(error))
        return None


def open_linked_case(key: str) -> None:
    """A link such as ``?case=ISIC_0024306&model=<id>`` (from the error browser) opens that
    dataset image, once: afterwards the reviewer's own choices stand. Call before the pickers."""
    linked = st.query_params.get("case")
    if not linked or st.session_state.get(f"{key}_linked") == linked:
        return
    st.session_state[f"{key}_linked"] = linked
    st.session_state[f"{key}_source"] = "Dataset image"
    st.session_state[f"{key}_dataset_id"] = linked
    model_id = st.query_params.get("model")
    if model_id in resources.current_catalogue().cards:
        st.session_state["model_id"] = model_id
        st.session_state[f"{key}_model"] = model_id


def case_from_dataset_id(text: str) -> resources.CaseImage | None:
    """The dataset image with this id, or ``None`` after saying why it cannot be opened."""
    if not text.strip():
        st.info("Type the id of a dataset image (e.g. ISIC_0024306 from HAM10000, "
                "ISIC_0000000 from ISIC 2017, IMD003 from PH2), then press Enter.")
        return None
    try:
        found = resources.dataset_image(text)
        return resources.case_from_file(found.path, "dataset", case_id=found.image_id)
    except (ValueError, KeyError, FileNotFoundError, imaging.ImageLoadError) as error:
        st.error(error_message(error))
        return None


def case_from_upload(name: str, data: bytes) -> resources.CaseImage | None:
    """Turn uploaded bytes into a case, or show why they cannot be used and return ``None``.

    The case keeps the uploaded file's (made-safe) name as its reference.
    """
    shown = plain(imaging.safe_file_name(name))
    if len(data) > UPLOAD_LIMIT_MB * 1_000_000:
        st.error(f"This file cannot be reviewed: {shown} is {len(data) / 1e6:.1f} MB; the "
                 f"limit is {UPLOAD_LIMIT_MB} MB. Nothing from it was used. Reduce or export "
                 "the image again (a dermoscopic JPEG is usually under 5 MB).")
        return None
    try:
        return resources.case_from_bytes(name, data, "upload",
                                         case_id=imaging.safe_file_name(name))
    except imaging.ImageLoadError as error:
        st.error(f"This file cannot be reviewed. {error_message(error)}")
        return None


def sample_metadata(case: resources.CaseImage) -> dict:
    """Metadata of a bundled sample or dataset image (age, sex, site, reference diagnosis),
    else empty."""
    if case.source == "dataset":
        try:
            return resources.dataset_image(case.case_id).metadata
        except (ValueError, KeyError, FileNotFoundError):
            return {}
    if case.source == "upload":  # named anything: recognised by its bytes
        return {"in_training_split": True} if resources.is_training_image(case.sha256) else {}
    if case.source != "sample":
        return {}
    labels = resources.sample_labels()
    match = labels[labels["file"] == case.name]
    return {} if match.empty else match.iloc[0].to_dict()


# ----------------------------------------------------------------------------- predictions

def probability_figure(prediction, height: int = 300) -> go.Figure:
    """Horizontal bars of the calibrated probabilities, with percentages, top class highlighted."""
    table = views.probability_table(prediction.probabilities)
    table["colour"] = np.where(table["class"] == prediction.top_class, "top", "other")
    figure = px.bar(table, x="probability", y="class", orientation="h", text="percent",
                    color="colour", color_discrete_map={"top": "#d62728", "other": "#7f7f7f"},
                    hover_data={"diagnosis": True, "colour": False}, range_x=[0, 1.15])
    figure.update_layout(showlegend=False, height=height, margin=dict(l=0, r=0, t=10, b=0),
                         xaxis_title="calibrated probability", yaxis_title=None,
                         yaxis=dict(categoryorder="array", categoryarray=list(CLASS_NAMES)[::-1]))
    figure.update_traces(textposition="outside", cliponaxis=False)
    return figure


REVEAL_LABEL = "Show the model's output anyway (unreliable)"


def output_allowed(report, key: str) -> bool:
    """Whether a prediction may be shown: the gate passed, or the reviewer asked to see it.

    On a gate failure the reasons come first, then a checkbox; the diagnosis, melanoma flag,
    heatmap and feedback form stay hidden until it is ticked.
    """
    if report is None or not report.withheld:
        return True
    reasons = " ".join(finding.message for finding in report.gate_failures)
    st.error(f"**Diagnosis withheld — the image failed the quality gate.** {reasons} "
             "The model's output on it is not to be trusted.", icon="⛔")
    return st.checkbox(REVEAL_LABEL, key=f"{key}_reveal", value=False)


def not_evaluated_banner(card) -> None:
    """Said before the output of a model that ``evaluate`` has not calibrated."""
    st.warning(f"**Not evaluated — {card.name} v{card.version} has no calibration.** It has not "
               "been evaluated on the validation split: its confidence is the raw model output "
               "(not a calibrated probability) and its melanoma threshold is the 50% default, "
               "not one chosen on validation. Use it for research only. An admin can evaluate "
               f"it: `python -m lesionlib evaluate --model {card.id}`.", icon="⚠️")


def unreliable_banner() -> None:
    st.warning("**UNRELIABLE — shown on request.** This image failed the quality gate: do not "
               "base any decision on the output below.", icon="⚠️")


def prediction_summary(prediction, report=None, members=(), card=None,
                       key: str = "prediction") -> bool:
    """Gate failures and cautions first, then top diagnosis, confidence, melanoma vs threshold.

    Returns whether the output was shown (``False`` while a gate failure withholds it).
    ``card`` adds how the melanoma threshold does on other clinics' images.
    """
    if card is not None and not card.calibrated:
        not_evaluated_banner(card)
    if not output_allowed(report, key):
        return False
    unreliable = report is not None and report.withheld
    if unreliable:
        unreliable_banner()
    if report is not None:
        quality_warnings(report, failures=False)
    suffix = " (UNRELIABLE)" if unreliable else ""
    if prediction.binary:
        binary_summary(prediction, card, unreliable)
        return True
    left, right = st.columns(2)
    left.metric("Top diagnosis" + suffix, prediction.top_class,
                help="The class with the highest calibrated probability.")
    left.caption(CLASS_LONG_NAMES[prediction.top_class])
    calibrated = card is None or card.calibrated
    right.metric(("Calibrated confidence" if calibrated else "Confidence (NOT calibrated)")
                 + suffix, f"{100 * prediction.top_probability:.1f}%")
    melanoma_box(prediction, card, unreliable)
    if members:
        tops = ", ".join(f"{member.model_id}: {member.top_class} "
                         f"({100 * member.top_probability:.0f}%)" for member in members)
        st.caption(f"Ensemble members — {tops}")
    return True


BINARY_NOTE = ("This model answers one question, melanoma or not: it names no other "
               "diagnosis, and below its threshold the lesion may still be another cancer "
               "(basal cell carcinoma, actinic keratosis / Bowen's disease).")


def binary_summary(prediction, card=None, unreliable: bool = False) -> None:
    """A binary melanoma model's output: its answer, the melanoma box, what it cannot say."""
    suffix = " (UNRELIABLE)" if unreliable else ""
    calibrated = card is None or card.calibrated
    left, right = st.columns(2)
    left.metric("Melanoma question" + suffix,
                "melanoma" if prediction.melanoma_flag else "not melanoma",
                help="At or above the model's operating threshold: melanoma.")
    right.metric(("Calibrated melanoma probability" if calibrated
                  else "Melanoma probability (NOT calibrated)") + suffix,
                 f"{100 * prediction.melanoma_probability:.1f}%")
    melanoma_box(prediction, card, unreliable)
    st.caption(BINARY_NOTE)


def melanoma_box(prediction, card=None, unreliable: bool = False) -> None:
    """Melanoma probability against the threshold, with the other-clinics caveat."""
    from lesionlib.caveats import melanoma_caveat

    melanoma = prediction.melanoma_probability
    threshold = prediction.melanoma_threshold
    chosen = card is None or card.calibrated
    text = (f"{'UNRELIABLE — ' if unreliable else ''}Melanoma probability "
            f"**{100 * melanoma:.1f}%** vs "
            + (f"this model's operating threshold **{100 * threshold:.1f}%**" if chosen else
               f"the default threshold **{100 * threshold:.1f}%** (not chosen on validation)"))
    caveat = (f" {melanoma_caveat(card, above=prediction.melanoma_flag)}" if card is not None
              else "")
    if prediction.melanoma_flag:
        st.error(f"⚠️ {text}: above the threshold — the model flags this lesion for a "
                 f"melanoma work-up.{caveat}")
    else:
        st.info(f"{text}: below the threshold.{caveat}")


def quality_warnings(report, failures: bool = True) -> None:
    """Gate failures (withheld) and cautions ("review carefully"), each visibly distinct."""
    if report.ok:
        st.caption("Quality checks: no warning.")
        return
    if failures:
        for finding in report.gate_failures:
            st.error(f"Quality check failed ({finding.code}): {finding.message}", icon="⛔")
    for finding in report.cautions:
        st.warning(f"Quality check — review carefully ({finding.code}): {finding.message}",
                   icon="⚠️")


def heatmap_controls(key: str, default_class: str, context: str = "",
                     container=st, class_names=CLASS_NAMES) -> tuple[str, str, float]:
    """Method, class and opacity choosers for a heatmap.

    The class chooser is keyed by ``context`` (the case and model): each new case starts on its
    own predicted class, while the method and opacity chosen stay as the reviewer left them.
    ``class_names``: the outputs that can be explained (a binary model's ``other``, ``mel``).
    """
    class_names = list(class_names)
    first, second, third = container.columns(3)
    method = first.selectbox("Heatmap method", explain.METHODS, key=f"{key}_method")
    class_name = second.selectbox("Explain class", class_names,
                                  index=class_names.index(default_class)
                                  if default_class in class_names else 0,
                                  key=f"{key}_class_{context}", format_func=class_label)
    opacity = third.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05, key=f"{key}_opacity")
    return method, class_name, opacity


def heatmap_layers(model_id: str) -> str:
    """Which layer a model's heatmaps come from (each member's, for an ensemble)."""
    cards = resources.current_catalogue().cards
    card = cards.get(model_id)
    if card is None:
        return "an unknown layer"
    if card.kind == "single":
        return f"the model's final image features (layer `{card.cam_layer}`)"
    if card.kind == "edge":
        parent = cards.get(card.edge["parent"])
        return (f"its parent model's final image features (layer `{parent.cam_layer}`)" if parent
                else "its parent model")
    layers = [f"{member}: `{cards[member].cam_layer}`" if member in cards else member
              for member in card.members]
    return ("the mean of its members' maps, each from that member's final image features "
            "(layers " + "; ".join(layers) + ")")


def heatmap_legend() -> None:
    """The colour scale of every heatmap, low to high, with what "high" means."""
    st.image(resources.encoded_png(("colour scale",), explain.colour_scale), width="stretch",
             caption="Heatmap colour scale: blue = low → red = high contribution to the chosen "
                     "class's score (each map is scaled to its own maximum; it shows where the "
                     "model looked, not where the lesion is).")


def show_heatmap(case, model_id: str, method: str, class_name: str, opacity: float,
                 side_by_side: bool = True, precomputed=None) -> bool:
    """Original and heatmap overlay, captioned with method, class, model and layer, and the
    colour legend; returns False (with a message) when it cannot be computed. ``precomputed``:
    the same map computed ahead (the quiz's stored reveals)."""
    try:
        heatmap = precomputed if precomputed is not None else resources.heatmap(
            case, model_id, method, resources.output_index(model_id, class_name))
    except MODEL_ERRORS as error:
        st.error(f"Heatmap unavailable: {error_message(error)}")
        return False
    except (ValueError, RuntimeError) as error:
        logger.warning("%s heatmap failed for %s: %s: %s", method, model_id,
                       type(error).__name__, error)
        st.error(f"The {method} heatmap could not be computed for model `{model_id}`; the "
                 "prediction above is unaffected. Try another heatmap method.")
        return False
    blended = resources.encoded_png(
        ("overlay", case.sha256, model_id, resources.fingerprint(
            model_id, resources.current_catalogue()), method, class_name, opacity,
         precomputed is not None),
        lambda: explain.overlay(case.image, heatmap, opacity))
    caption = (f"{method} for {class_label(class_name)} ({model_id}), from "
               f"{heatmap_layers(model_id)}")
    cards = resources.current_catalogue().cards
    faithfulness_panels.heatmap_warnings(heatmap, model_id, method, cards)  # before it is read
    card = cards.get(model_id)
    if card is not None and card.kind == "edge":
        caption = (f"{method} for {class_label(class_name)}, computed with the parent model "
                   f"{card.edge['parent']} (the edge model {model_id} has no gradients)")
        st.caption(f"This heatmap comes from the parent Keras model `{card.edge['parent']}` "
                   f"v{card.edge['parent_version']}: the edge model `{model_id}` is a TensorFlow "
                   "Lite export without gradients, so its own attention cannot be shown.")
    if side_by_side:
        left, right = st.columns(2)
        left.image(resources.encoded_png(("case", case.sha256), lambda: case.image),
                   caption="Original", width="stretch")
        right.image(blended, caption=caption, width="stretch")
    else:
        st.image(blended, caption=caption, width="stretch")
    heatmap_legend()
    return True


def run_model(case, model_id: str):
    """The cached prediction, or ``None`` after showing why the model cannot be used."""
    try:
        return resources.predict(case, model_id)
    except MODEL_ERRORS as error:
        st.error(f"Model `{model_id}` cannot be used: {error_message(error)}")
        return None


def error_table_key(model_id: str, set_name: str, true_classes, predicted_classes,
                    sort_by: str) -> str:
    """The error browser table's widget key: one per model, set, filters and order."""
    parts = [model_id, set_name, "+".join(true_classes), "+".join(predicted_classes), sort_by]
    return "audit_errors_" + "_".join(parts)


def wrap_tabs() -> None:
    """Let a row of many tabs wrap onto a second line instead of scrolling out of sight."""
    st.markdown("<style>[data-testid='stTabs'] [role='tablist'] {flex-wrap: wrap; "
                "row-gap: 0.25rem; height: auto; overflow: visible}</style>",
                unsafe_allow_html=True)
