"""The case report: a one-page PDF whose text holds the model version and the caveat (read back
with pypdf), and FHIR R5 JSON that fhir.resources validates; Case review offers both."""

from __future__ import annotations

import base64
import io
import json
from datetime import datetime, timezone

import numpy as np
import pypdf
import pytest
from PIL import Image

from lesionlib import case_report, fhir_report
from lesionlib.classes import CLASS_NAMES

PROBABILITIES = dict(zip(CLASS_NAMES, [0.02, 0.03, 0.05, 0.01, 0.62, 0.25, 0.02]))


def make_report(**changes) -> case_report.CaseReport:
    image = np.full((150, 200, 3), 140, "uint8")
    values = dict(
        case_reference="clinic case 12", image=image, model_id="ensemble.ham10000",
        model_name="Ensemble", model_version="2.0.0",
        intended_use="decision support for review and teaching, not a diagnosis",
        probabilities=PROBABILITIES, top_class="mel", melanoma_probability=0.62,
        melanoma_threshold=0.31, threshold_chosen_on_validation=True,
        melanoma_caveat="On images from other clinics this threshold caught only 71% of "
                        "melanomas on PH2 (n=40): a flag is a prompt for a melanoma work-up, "
                        "not a diagnosis.",
        quality_findings=(("uncertain", "The model is unsure between classes.", False),),
        heatmap=np.zeros((150, 200, 3), "uint8"), heatmap_caption="Grad-CAM for mel",
        legend=np.zeros((14, 256, 3), "uint8"),
        verdict=case_report.Verdict("bob", False, "nv", "Symmetric — follow up in 3 months ✓",
                                    "2026-12-04 09:00 UTC"),
        created_at="2026-12-04 09:05 UTC")
    values.update(changes)
    return case_report.CaseReport(**values)


def pdf_text(data: bytes) -> tuple[int, str]:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return len(reader.pages), " ".join(page.extract_text() for page in reader.pages)


def test_the_pdf_is_one_page_with_model_version_caveat_and_verdict():
    pages, text = pdf_text(case_report.pdf_bytes(make_report()))
    text = " ".join(text.split())
    assert pages == 1
    assert "not a diagnosis" in text
    assert "version 2.0.0" in text and "ensemble.ham10000" in text
    assert "caught only 71% of melanomas on PH2" in text
    assert "above the threshold" in text and "62.0%" in text and "31.0%" in text
    assert "Reviewer bob disagrees; corrected diagnosis: nv" in text
    assert "Symmetric - follow up in 3 months" in text  # symbols outside Latin-1 simplified
    assert "clinic case 12" in text and "Review carefully (uncertain)" in text
    assert "CC BY-NC 4.0" in text


def test_a_withheld_image_is_marked_unreliable_in_both_formats():
    report = make_report(quality_findings=(("blur", "The image is blurred.", True),),
                         verdict=None, heatmap=None)
    _, text = pdf_text(case_report.pdf_bytes(report))
    assert "UNRELIABLE" in text and "No reviewer verdict saved" in text
    bundle = json.loads(fhir_report.bundle_json(report))
    conclusion = next(entry["resource"]["conclusion"] for entry in bundle["entry"]
                      if entry["resource"]["resourceType"] == "DiagnosticReport")
    assert conclusion.startswith("UNRELIABLE")


def test_the_fhir_bundle_validates_and_holds_each_finding():
    from fhir.resources.bundle import Bundle

    text = fhir_report.bundle_json(make_report(), now=datetime(2026, 12, 4, tzinfo=timezone.utc))
    bundle = Bundle.model_validate_json(text)  # fhir.resources validates (R5)
    resources = {}
    for entry in bundle.entry:
        resources.setdefault(entry.resource.get_resource_type(), []).append(entry.resource)
    report, = resources["DiagnosticReport"]
    device, = resources["Device"]
    assert report.status == "preliminary"
    assert [version.value for version in device.version] == ["2.0.0"]
    assert device.identifier[0].value == "ensemble.ham10000"
    assert len(report.result) == len(resources["Observation"]) == 3  # top, melanoma, quality
    melanoma = next(observation for observation in resources["Observation"]
                    if observation.code.text.startswith("Melanoma probability"))
    assert float(melanoma.valueQuantity.value) == pytest.approx(62.0)
    assert melanoma.interpretation[0].coding[0].code == "H"
    assert float(melanoma.referenceRange[0].high.value) == pytest.approx(31.0)
    document, = resources["DocumentReference"]
    image = Image.open(io.BytesIO(document.content[0].attachment.data))  # decoded by the model
    assert image.size == (200, 150)
    raw = json.loads(text)  # and base64 in the JSON a hospital system receives
    data = next(entry["resource"]["content"][0]["attachment"]["data"] for entry in raw["entry"]
                if entry["resource"]["resourceType"] == "DocumentReference")
    assert base64.b64decode(data).startswith(b"\x89PNG")
    assert report.media[0].link.reference == f"urn:uuid:{document.id}"
    assert "clinic case 12" == report.identifier[0].value


@pytest.mark.slow
def test_case_review_offers_both_downloads(no_dataset):
    from test_pages import assert_ok, open_page

    app = open_page("case_review")
    assert_ok(app)
    buttons = [element for element in app.get("download_button")]
    labels = [button.proto.label for button in buttons]
    assert labels == ["Download report (PDF)", "Download report (FHIR JSON)"]
    assert "save your feedback above first" in " ".join(str(caption.value)
                                                       for caption in app.caption)


from test_pages import app_env, no_dataset, page_weights  # noqa: E402,F401


def test_a_binary_models_report_gives_its_melanoma_answer_and_no_diagnosis():
    report = make_report(probabilities={"other": 0.38, "mel": 0.62}, top_class="mel",
                         binary=True)
    pages, text = pdf_text(case_report.pdf_bytes(report))
    text = " ".join(text.split())
    assert pages == 1 and "binary model, melanoma vs the rest" in text
    assert "Answer" in text and "Top diagnosis" not in text and "akiec" not in text
    bundle = json.loads(fhir_report.bundle_json(report))
    titles = [entry["resource"].get("code", {}).get("text", "") for entry in bundle["entry"]
              if entry["resource"]["resourceType"] == "Observation"]
    assert "Melanoma probability (AI decision support)" in titles
    assert not any("Most probable diagnosis" in title for title in titles)
