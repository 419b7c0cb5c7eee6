"""A case report as FHIR R5 (``fhir.resources``), so a hospital system can take the result in.

One ``Bundle`` (type ``collection``) holds a ``DiagnosticReport`` (status ``preliminary``: decision
support awaiting a clinician), one ``Observation`` per finding (the top diagnosis with its
probability, the melanoma probability against the model's threshold, each quality finding), the
``Device`` (the model: id, name, version, intended use) that produced them, and the image as a
``DocumentReference`` attachment (R5 has no ``Media``) that the report points to. No patient
identifier is written: the case reference is the reviewer's own. Nothing here imports Streamlit.
"""

from __future__ import annotations

import base64
import io
import uuid
from datetime import datetime, timezone

import numpy as np
from PIL import Image

from lesionlib.case_report import (NOT_A_DIAGNOSIS, CaseReport, answer_sentence,
                                   melanoma_sentence, verdict_sentence)
from lesionlib.classes import CLASS_LONG_NAMES

LOINC = "http://loinc.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
UCUM = "http://unitsofmeasure.org"


def _reference(kind: str, key: str) -> dict:
    return {"reference": f"urn:uuid:{key}", "type": kind}


def _png_base64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype="uint8")).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _observation(key: str, device: str, when: str, code_text: str, **value) -> dict:
    return {"resourceType": "Observation", "id": key, "status": "preliminary",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "imaging",
                                      "display": "Imaging"}]}],
            "code": {"text": code_text}, "effectiveDateTime": when,
            "device": _reference("Device", device), **value}


def bundle_dict(report: CaseReport, now: datetime | None = None) -> dict:
    """The report as a FHIR R5 ``Bundle``, as a JSON-ready dictionary (validated by
    ``bundle_json``)."""
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(
        timespec="seconds")
    keys = {name: str(uuid.uuid4()) for name in ("report", "device", "image", "top", "melanoma")}
    device = {"resourceType": "Device", "id": keys["device"],
              "identifier": [{"system": "urn:lesionlib:model-id", "value": report.model_id}],
              "displayName": report.model_name,
              "name": [{"value": report.model_name, "type": "user-friendly-name"}],
              "version": [{"value": report.model_version}],
              "note": [{"text": f"Intended use: {report.intended_use}"}]}
    top_probability = report.probabilities.get(report.top_class, 0.0)
    top = _observation(
        keys["top"], keys["device"], when, "Most probable diagnosis (AI decision support)",
        valueCodeableConcept={"coding": [{"system": "urn:lesionlib:ham10000-class",
                                          "code": report.top_class,
                                          "display": CLASS_LONG_NAMES[report.top_class]}],
                              "text": CLASS_LONG_NAMES[report.top_class]},
        component=[{"code": {"text": f"Calibrated probability: {name}"},
                    "valueQuantity": {"value": round(100 * probability, 2), "unit": "%",
                                      "system": UCUM, "code": "%"}}
                   for name, probability in report.probabilities.items()],
        note=[{"text": f"Calibrated confidence {100 * top_probability:.1f}%. "
                       f"{NOT_A_DIAGNOSIS}"}])
    melanoma = _observation(
        keys["melanoma"], keys["device"], when, "Melanoma probability (AI decision support)",
        valueQuantity={"value": round(100 * report.melanoma_probability, 2), "unit": "%",
                       "system": UCUM, "code": "%"},
        interpretation=[{"coding": [{"system": INTERPRETATION,
                                     "code": "H" if report.melanoma_flag else "N",
                                     "display": "High" if report.melanoma_flag else "Normal"}],
                         "text": "above the model's operating threshold" if report.melanoma_flag
                         else "below the model's operating threshold"}],
        referenceRange=[{"high": {"value": round(100 * report.melanoma_threshold, 2),
                                  "unit": "%", "system": UCUM, "code": "%"},
                         "text": "the model's operating threshold"
                         + ("" if report.threshold_chosen_on_validation
                            else " (a default, not chosen on validation)")}],
        note=[{"text": melanoma_sentence(report)}])
    # a binary melanoma model names no diagnosis among the seven classes: its finding is the
    # melanoma observation alone
    observations = [melanoma] if report.binary else [top, melanoma]
    for code, message, withholds in report.quality_findings:
        observations.append(_observation(
            str(uuid.uuid4()), keys["device"], when, f"Image quality check: {code}",
            valueString=("Failed, diagnosis withheld: " if withholds else "Review carefully: ")
            + message))
    image = {"resourceType": "DocumentReference", "id": keys["image"], "status": "current",
             "description": f"Dermoscopic image of case {report.case_reference}",
             "content": [{"attachment": {"contentType": "image/png",
                                         "data": _png_base64(report.image),
                                         "title": "Image as reviewed"}}]}
    answer = (answer_sentence(report) if report.binary else
              f"most probable {CLASS_LONG_NAMES[report.top_class]} "
              f"({100 * top_probability:.1f}%).")
    conclusion = (f"AI decision support ({report.model_name} v{report.model_version}): {answer} "
                  f"{melanoma_sentence(report)} {verdict_sentence(report)} {NOT_A_DIAGNOSIS}")
    if report.withheld:
        conclusion = ("UNRELIABLE: the image failed the quality gate; the output was shown on "
                      "request only. " + conclusion)
    diagnostic = {
        "resourceType": "DiagnosticReport", "id": keys["report"], "status": "preliminary",
        "identifier": [{"system": "urn:lesionlib:case-reference",
                        "value": report.case_reference}],
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                                  "code": "IMG", "display": "Diagnostic Imaging"}]}],
        "code": {"text": "Dermoscopic image review with AI decision support"},
        "effectiveDateTime": when, "issued": when,
        "performer": [_reference("Device", keys["device"])],
        "result": [_reference("Observation", observation["id"]) for observation in observations],
        "media": [{"comment": "Image as reviewed",
                   "link": _reference("DocumentReference", keys["image"])}],
        "conclusion": conclusion}
    if report.verdict is not None and report.verdict.note.strip():
        diagnostic["note"] = [{"text": f"Reviewer's note: {report.verdict.note.strip()}"}]
    resources = [diagnostic, device, *observations, image]
    return {"resourceType": "Bundle", "type": "collection", "timestamp": when,
            "entry": [{"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}
                      for resource in resources]}


def bundle_json(report: CaseReport, now: datetime | None = None) -> str:
    """The report as FHIR R5 JSON, validated by ``fhir.resources`` (raises on an invalid one)."""
    from fhir.resources.bundle import Bundle

    return Bundle.model_validate(bundle_dict(report, now)).model_dump_json(indent=2)
