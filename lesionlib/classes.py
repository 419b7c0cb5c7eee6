"""The HAM10000 diagnostic classes, in the index order used everywhere (alphabetical)."""

CLASS_NAMES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
MELANOMA_INDEX = CLASS_NAMES.index("mel")
# A binary melanoma model (brought in with ``import-model --binary-melanoma``) answers one
# question: melanoma or not. Its two outputs, in this order:
BINARY_CLASS_NAMES = ("other", "mel")

CLASS_LONG_NAMES = {
    "akiec": "Actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesion",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevus",
    "vasc": "Vascular lesion",
    "other": "Not melanoma (any other lesion)",
}

CLASS_DESCRIPTIONS = {
    "akiec": "Sun-induced, scaly, usually pink or red patches on chronically sun-damaged skin. "
    "Actinic keratoses are precancerous; Bowen's disease is squamous cell carcinoma in situ. "
    "Dermoscopy often shows a 'strawberry' pattern of red pseudo-network and white scale.",
    "bcc": "The most common skin cancer. It grows slowly and rarely spreads, but destroys tissue "
    "locally. Typical dermoscopic clues: arborizing (tree-like) vessels, blue-grey ovoid nests, "
    "leaf-like areas and ulceration.",
    "bkl": "Benign keratoses: seborrheic keratoses, solar lentigines and lichen-planus-like "
    "keratoses. Harmless, but they can mimic melanoma. Clues: milia-like cysts, comedo-like "
    "openings, a sharply demarcated 'stuck-on' look.",
    "df": "A common benign fibrous nodule, often on the legs. Dermoscopy classically shows a "
    "central white scar-like patch surrounded by a delicate pigment network.",
    "mel": "A malignant tumour of melanocytes and the deadliest common skin cancer; early "
    "detection matters. Clues: asymmetry of colour and structure, atypical network, streaks, "
    "blue-white veil, regression structures, many colours.",
    "nv": "Common moles: benign proliferations of melanocytes, by far the most frequent class. "
    "Usually symmetric with a regular network, globules or a homogeneous pattern.",
    "vasc": "Vascular lesions such as cherry angiomas, angiokeratomas and pyogenic granulomas. "
    "Dermoscopy shows red, purple or blue lacunae (well-demarcated round areas).",
}

MALIGNANT_CLASSES = ("akiec", "bcc", "mel")


def class_index(name: str) -> int:
    """Return the index of a class name.

    Raises:
        KeyError: the name is not one of ``CLASS_NAMES``.
    """
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        raise KeyError(f"Unknown class {name!r}; expected one of {', '.join(CLASS_NAMES)}.") from None
