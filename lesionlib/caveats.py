"""Caveats computed from a model card, for outputs that could otherwise be over-read.

The melanoma operating threshold is fitted on HAM10000 validation data; on other clinics' images
it catches far fewer melanomas. ``melanoma_caveat`` states that from the card's own external
metrics, so that "below the threshold" is never read as "benign".
"""

from __future__ import annotations

from lesionlib.data import EXTERNAL_SETS

EXTERNAL_TITLES = {"isic2017": "ISIC 2017", "ph2": "PH2", "bcn20000_test": "BCN20000"}
OTHER_CLINIC_SETS = (*EXTERNAL_SETS, "bcn20000_test")


def external_sensitivities(card) -> list[tuple[str, float, int]]:
    """``(set title, melanoma sensitivity at the card's threshold, melanomas in the set)`` for
    each external set the card reports on."""
    rows = []
    for set_name in OTHER_CLINIC_SETS:
        metrics = card.metrics.get(set_name) or {}
        sensitivity = metrics.get("melanoma_sensitivity")
        if sensitivity is not None and metrics.get("n_melanoma"):
            rows.append((EXTERNAL_TITLES.get(set_name, set_name), float(sensitivity),
                         int(metrics["n_melanoma"])))
    return rows


def melanoma_caveat(card, above: bool | None = None) -> str:
    """One sentence on how many melanomas this threshold catches on other clinics' images.

    ``above``: the case is above the threshold (the sentence then ends on what a flag means,
    not on "below the threshold"); ``None`` when it speaks of the threshold in general.
    """
    rows = external_sensitivities(card)
    ending = ("a flag is a prompt for a melanoma work-up, not a diagnosis." if above else
              "below the threshold does not mean benign.")
    if not rows:
        return f"This model's sensitivity on images from other clinics has not been measured: {ending}"
    measured = " and ".join(f"{sensitivity:.0%} of melanomas on {title} (n={count})"
                            for title, sensitivity, count in rows)
    return f"On images from other clinics this threshold caught only {measured}: {ending}"
