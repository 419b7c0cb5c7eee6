"""A reviewed case as a document a clinician can file: a one-page PDF (fpdf2).

``CaseReport`` gathers what Case review showed: the image and the heatmap with its legend, the
calibrated probabilities, the melanoma probability against the model's threshold with the
other-clinic caveat, the quality findings, the model's name, id, version and intended use, the
reviewer's saved verdict and note, the case reference and the time. ``pdf_bytes`` lays it out on
one A4 page; ``lesionlib.fhir_report`` writes the same content as FHIR. Nothing here imports
Streamlit.
"""

from __future__ import annotations

import dataclasses
import io
from datetime import datetime, timezone

import numpy as np
from PIL import Image

from lesionlib.classes import CLASS_LONG_NAMES

NOT_A_DIAGNOSIS = "Decision support for review and teaching - not a diagnosis."
DATA_TERMS = ("The model was trained on HAM10000 (and other research sets) under CC BY-NC 4.0: "
              "non-commercial use, with attribution (Tschandl et al., Sci Data 5, 180161, 2018).")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The reviewer's saved feedback on the case."""

    reviewer: str
    agree: bool
    corrected_class: str | None
    note: str
    saved_at: str


@dataclasses.dataclass(frozen=True)
class CaseReport:
    """Everything one case report holds (see the module docstring)."""

    case_reference: str
    image: np.ndarray
    model_id: str
    model_name: str
    model_version: str
    intended_use: str
    probabilities: dict[str, float]
    top_class: str
    melanoma_probability: float
    melanoma_threshold: float
    threshold_chosen_on_validation: bool
    melanoma_caveat: str
    quality_findings: tuple[tuple[str, str, bool], ...]  # (code, message, withholds)
    heatmap: np.ndarray | None = None  # the overlay shown, RGB
    heatmap_caption: str = ""
    legend: np.ndarray | None = None  # the colour scale, RGB
    verdict: Verdict | None = None
    created_at: str = ""
    binary: bool = False  # a melanoma-vs-the-rest model: no seven-class diagnosis

    @property
    def melanoma_flag(self) -> bool:
        return self.melanoma_probability >= self.melanoma_threshold

    @property
    def withheld(self) -> bool:
        """The image failed the quality gate (the output was shown on request only)."""
        return any(withholds for _, _, withholds in self.quality_findings)


def from_prediction(case_reference: str, image: np.ndarray, prediction, card, report,
                    caveat: str, heatmap: np.ndarray | None = None, heatmap_caption: str = "",
                    legend: np.ndarray | None = None, verdict: Verdict | None = None,
                    now: datetime | None = None) -> CaseReport:
    """A ``CaseReport`` from Case review's objects (``inference.Prediction``, the model card and
    its ``quality.QualityReport``)."""
    findings = tuple((finding.code, finding.message, bool(finding.withholds))
                     for finding in (report.findings if report is not None else ()))
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return CaseReport(
        case_reference=str(case_reference), image=np.asarray(image), model_id=card.id,
        model_name=card.name, model_version=card.version, intended_use=card.intended_use,
        probabilities=dict(prediction.probabilities), top_class=prediction.top_class,
        melanoma_probability=float(prediction.melanoma_probability),
        melanoma_threshold=float(prediction.melanoma_threshold),
        threshold_chosen_on_validation=bool(card.calibrated), melanoma_caveat=caveat,
        quality_findings=findings, heatmap=heatmap, heatmap_caption=heatmap_caption,
        legend=legend, verdict=verdict, created_at=moment.strftime("%Y-%m-%d %H:%M UTC"),
        binary=bool(getattr(prediction, "binary", False)))


def answer_sentence(report: CaseReport) -> str:
    """The model's answer in words: its top diagnosis, or a binary model's melanoma answer."""
    if report.binary:
        return (f"Answer (a binary model, melanoma vs the rest): "
                f"{'melanoma' if report.melanoma_flag else 'not melanoma'}. It names no other "
                "diagnosis: below its threshold the lesion may still be another cancer.")
    return (f"Top diagnosis: {report.top_class} ({CLASS_LONG_NAMES[report.top_class]}), "
            f"calibrated confidence {100 * report.probabilities.get(report.top_class, 0.0):.1f}%.")


def melanoma_sentence(report: CaseReport) -> str:
    """The melanoma box in words, as on the page."""
    threshold = ("the model's operating threshold" if report.threshold_chosen_on_validation
                 else "the default threshold (not chosen on validation)")
    side = ("above the threshold: the model flags this lesion for a melanoma work-up"
            if report.melanoma_flag else "below the threshold")
    return (f"Melanoma probability {100 * report.melanoma_probability:.1f}% vs {threshold} "
            f"{100 * report.melanoma_threshold:.1f}%: {side}. {report.melanoma_caveat}")


def verdict_sentence(report: CaseReport) -> str:
    if report.verdict is None:
        return "No reviewer verdict saved for this case."
    verdict = report.verdict
    said = ("agrees with the model" if verdict.agree else
            f"disagrees; corrected diagnosis: {verdict.corrected_class or 'not given'}")
    return f"Reviewer {verdict.reviewer} {said} (saved {verdict.saved_at})."


def _latin1(text: str) -> str:
    """Text for the PDF's core fonts (Latin-1): common symbols spelled out, others replaced."""
    for symbol, plain in (("—", "-"), ("–", "-"), ("→", "->"), ("≥", ">="), ("≤", "<="),
                          ("’", "'"), ("‘", "'"), ("“", '"'), ("”", '"'), ("…", "..."),
                          ("\u2060", ""), ("·", "-")):
        text = text.replace(symbol, plain)
    return text.encode("latin-1", "replace").decode("latin-1")


def _png(image: np.ndarray) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype="uint8")).save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


def pdf_bytes(report: CaseReport) -> bytes:
    """The report as a one-page A4 PDF."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_margins(14, 12, 14)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def line(text: str, size: float = 9, style: str = "", height: float = 4.6) -> None:
        pdf.set_font("helvetica", style, size)
        pdf.multi_cell(width, height, _latin1(text), new_x="LMARGIN", new_y="NEXT")

    line("Dermoscopy case report", 15, "B", 7)
    line(NOT_A_DIAGNOSIS, 10, "B")
    line(f"Case: {report.case_reference}    Report created: {report.created_at}")
    line(f"Model: {report.model_name} ({report.model_id}), version {report.model_version}")
    line(f"Intended use: {report.intended_use}")
    if report.withheld:
        pdf.set_text_color(170, 0, 0)
        line("UNRELIABLE: this image failed the quality gate; the output below was shown on the "
             "reviewer's request and must not be the basis of any decision.", 10, "B")
        pdf.set_text_color(0, 0, 0)
    top = pdf.get_y() + 2
    side = (width - 6) / 2
    image_height = side * report.image.shape[0] / report.image.shape[1]
    pdf.image(_png(report.image), x=pdf.l_margin, y=top, w=side, h=image_height)
    pdf.set_xy(pdf.l_margin, top + image_height + 1)
    pdf.set_font("helvetica", "", 7)
    pdf.cell(side, 3.5, "Image as reviewed")
    if report.heatmap is not None:
        heatmap_height = side * report.heatmap.shape[0] / report.heatmap.shape[1]
        pdf.image(_png(report.heatmap), x=pdf.l_margin + side + 6, y=top, w=side,
                  h=heatmap_height)
        pdf.set_xy(pdf.l_margin + side + 6, top + heatmap_height + 1)
        pdf.multi_cell(side, 3.2, _latin1(report.heatmap_caption))
        if report.legend is not None:
            legend_y = pdf.get_y() + 0.5
            pdf.image(_png(report.legend), x=pdf.l_margin + side + 6, y=legend_y, w=side, h=3)
            pdf.set_xy(pdf.l_margin + side + 6, legend_y + 3.5)
            pdf.cell(side, 3.2, _latin1("Heatmap colour scale: blue = low -> red = high "
                                        "contribution to the class's score"))
    pdf.set_y(max(pdf.get_y(), top + image_height) + 6)
    line("Calibrated probabilities", 11, "B", 6)
    ranked = sorted(report.probabilities, key=lambda name: -report.probabilities[name])
    bar_width = width * 0.35
    for name in ranked:
        probability = report.probabilities.get(name, 0.0)
        pdf.set_font("helvetica", "B" if name == report.top_class else "", 8.5)
        pdf.cell(width * 0.45, 4.4, _latin1(f"{name} - {CLASS_LONG_NAMES[name].split(' (')[0]}"))
        y = pdf.get_y()
        x = pdf.get_x()
        pdf.set_fill_color(214, 39, 40) if name == report.top_class else pdf.set_fill_color(
            127, 127, 127)
        pdf.rect(x, y + 0.8, max(0.3, bar_width * probability), 2.8, style="F")
        pdf.set_x(x + bar_width + 2)
        pdf.cell(20, 4.4, f"{100 * probability:.1f}%", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)
    line(answer_sentence(report), 9.5, "B")
    line("Melanoma", 11, "B", 6)
    line(melanoma_sentence(report))
    line("Quality checks", 11, "B", 6)
    if not report.quality_findings:
        line("No warning.")
    for code, message, withholds in report.quality_findings:
        line(f"{'Failed (diagnosis withheld)' if withholds else 'Review carefully'} ({code}): "
             f"{message}")
    line("Reviewer", 11, "B", 6)
    line(verdict_sentence(report))
    if report.verdict is not None and report.verdict.note.strip():
        line(f"Note: {report.verdict.note.strip()[:1500]}")
    pdf.set_y(pdf.h - 22)
    line(f"{NOT_A_DIAGNOSIS} The model's output supports a clinician's review; it does not "
         f"replace examination, history or histopathology. {DATA_TERMS}", 7, "", 3.4)
    return bytes(pdf.output())
