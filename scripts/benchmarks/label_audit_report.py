"""Write reports/label_audit.md: likely HAM10000 label errors, and how they split by dx_type.

Usage: python scripts/benchmarks/label_audit_report.py [--weights weights] [--out reports/label_audit.md]
       [--model ID ...]   (default: the default model and its members)

Confident learning (cleanlab) on each model's stored out-of-sample predictions on the HAM10000
validation and test splits (``lesionlib.label_audit``); no model is run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lesionlib import label_audit, registry  # noqa: E402

COMMAND = "python scripts/benchmarks/label_audit_report.py"
HEADER = """# Label-issue audit: is it the model or the label?

Written by `{command}`. Likely label errors are found with confident learning
(`cleanlab.filter.find_label_issues`, Northcutt et al., JAIR 2021) from each model's stored
**out-of-sample** probabilities on the lesion-grouped HAM10000 validation and test splits
(`weights/<id>/predictions/ham10000_val.csv`, `ham10000_test.csv`; {images:,} images, none
trained on). A *suspect* is an image whose given label the model finds unlikely by its own
per-class confidence; suspects are ranked by the model's probability of the given label (lowest
first). The dashboard lists them in **Performance and error audit → Label issues**.

A suspect is a candidate for a second look, not a proven error. The models score about 0.7
balanced accuracy, so many suspects are the **model's** mistakes; how the reference diagnosis
was confirmed (`dx_type`) helps tell which. A histopathology-confirmed label (`histo`) is the
strongest reference there is; follow-up and expert consensus are weaker.

"""


def percent(value) -> str:
    return "" if value != value else f"{100 * value:.1f}%"  # NaN -> blank


def markdown_table(frame) -> list[str]:
    columns = list(frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(value) for value in row) + " |")
    return lines


def dx_type_lines(audit: label_audit.LabelAudit) -> list[str]:
    table = audit.by_dx_type.copy()
    table["flagged"] = table["flagged"].map(percent)
    table["share_of_suspects"] = table["share_of_suspects"].map(percent)
    table = table.rename(columns={"flagged": "share of its images flagged",
                                  "share_of_suspects": "share of the suspects"})
    return markdown_table(table)


def reading_lines(audit: label_audit.LabelAudit) -> list[str]:
    """The headline, in words, from the default model's audit."""
    table = audit.by_dx_type.set_index("dx_type")
    histo = table.loc["histo"] if "histo" in table.index else None
    lines = ["## Reading", ""]
    if histo is not None:
        lines.append(
            f"- {int(histo['suspects'])} of the {len(audit.suspects)} suspects of "
            f"`{audit.model_id}` ({percent(histo['share_of_suspects'])}) carry a "
            f"histopathology-confirmed label, against {percent(histo['images'] / len(audit.images))}"
            " of the audited images: the suspects gather where the reference is strongest, so "
            "most of them are more likely the model's errors than wrong labels.")
    nevi = audit.images[audit.images["true_class"] == "nv"]
    flagged = audit.suspects[audit.suspects["given_label"] == "nv"]
    rates = [f"{name} {percent((flagged['dx_type'] == name).sum() / count)} of {count}"
             for name, count in nevi["dx_type"].value_counts().items()]
    if rates:
        lines.append("- Confirmation type goes with the diagnosis (almost every follow-up is a "
                     "nevus), so compare within a class. Nevi flagged, by confirmation type: "
                     + ", ".join(rates) + ". Nevi are usually biopsied because they looked "
                     "suspicious; that the model, too, finds them unlike typical nevi is "
                     "expected.")
    lines.append("- Consensus-confirmed labels (no biopsy) are where a wrong label is most "
                 "plausible: look at those suspects first (filter by dx_type on the page).")
    return lines + [""]


def model_section(audit: label_audit.LabelAudit, card) -> list[str]:
    lines = [f"## `{audit.model_id}` v{audit.model_version}", "",
             f"{len(audit.images):,} images ({' + '.join(audit.sets)}), "
             f"**{len(audit.suspects):,} suspects** "
             f"({percent(len(audit.suspects) / len(audit.images))}). Test balanced accuracy of "
             f"the model: {card.metrics.get('ham10000_test', {}).get('balanced_accuracy', 0):.3f}."
             , "", "By confirmation type:", "", *dx_type_lines(audit), "",
             "By given class and confirmation type (suspects / images):", "",
             *markdown_table(audit.by_class), ""]
    top = audit.suspects.head(15).copy()
    top["given_label_probability"] = top["given_label_probability"].map("{:.3f}".format)
    top["suggested_label_probability"] = top["suggested_label_probability"].map(
        "{:.3f}".format)
    lines += ["The 15 most suspicious:", "",
              *markdown_table(top[["rank", "set", "image_id", "given_label", "suggested_label",
                                   "given_label_probability", "suggested_label_probability",
                                   "dx_type", "dataset"]]), ""]
    return lines


def agreement_lines(singles: list[label_audit.LabelAudit]) -> list[str]:
    table = label_audit.agreement(singles)
    everyone = table[table["models"] == len(singles)]
    lines = [f"## Suspects flagged by every single model ({', '.join(a.model_id for a in singles)})",
             "", "A label that several models doubt is a stronger candidate for review than one "
             "model's doubt (they learned from the same training images, so a shared blind spot "
             f"remains possible). {len(everyone):,} images are flagged by all {len(singles)}, of "
             f"{len(table):,} flagged by at least one.", ""]
    counts = everyone["dx_type"].value_counts()
    images = singles[0].images["dx_type"].fillna("unknown").value_counts()
    lines += ["| dx_type | flagged by all | images | share flagged |", "|---|---|---|---|"]
    for name in label_audit._ordered(list(images.index)):
        lines.append(f"| {name} | {int(counts.get(name, 0))} | {int(images.get(name, 0))} | "
                     f"{percent(counts.get(name, 0) / images.get(name, 1))} |")
    lines.append("")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--out", default="reports/label_audit.md")
    parser.add_argument("--model", action="append", help="model id (repeatable)")
    args = parser.parse_args()
    catalogue = registry.discover(args.weights)
    default = registry.get_card(catalogue.default_id(), catalogue)
    model_ids = args.model or [default.id, *default.members]
    audits = {}
    for model_id in dict.fromkeys(model_ids):
        try:
            audits[model_id] = label_audit.audit_model(registry.get_card(model_id, catalogue))
        except (KeyError, ValueError) as error:
            print(f"error: {error.args[0]}", file=sys.stderr)
            return 2
    first = next(iter(audits.values()))
    lines = [HEADER.format(command=COMMAND if not args.model else COMMAND + "".join(
        f" --model {model_id}" for model_id in args.model), images=len(first.images))]
    lines += reading_lines(first)
    for model_id, audit in audits.items():
        lines += model_section(audit, catalogue.cards[model_id])
    singles = [audit for model_id, audit in audits.items()
               if catalogue.cards[model_id].kind == "single"]
    if len(singles) > 1:
        lines += agreement_lines(singles)
    Path(args.out).write_text("\n".join(lines).rstrip() + "\n")
    print(f"Wrote {args.out}: " + "; ".join(f"{model_id} {len(audit.suspects)} suspects of "
                                            f"{len(audit.images)}"
                                            for model_id, audit in audits.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
