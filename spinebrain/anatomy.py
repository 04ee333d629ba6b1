"""Names, label values, coded terminology and colours shared by every module (SPEC "Conventions").

One table: a structure's label value, SNOMED CT code and display colour are looked up here and
nowhere else, so segment names, terminology and colours agree between the CLI and Slicer.
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORY_ANATOMY = ("SCT", "123037004", "Anatomical Structure")
CATEGORY_TISSUE = ("SCT", "85756007", "Tissue")  # DICOM CID 7153 tissue types live under "Tissue"
CATEGORY_ALTERED = ("SCT", "49755003", "Morphologically Altered Structure")


@dataclass(frozen=True)
class Structure:
    name: str  # display / segment name, e.g. "L3"
    code: str  # SNOMED CT code value
    meaning: str  # SNOMED CT code meaning
    category: tuple[str, str, str]  # (scheme, code, meaning)
    color: tuple[float, float, float]  # RGB 0..1
    label: int | None = None  # value in label maps, where the structure has a fixed one

    def terminology_entry(self) -> str:
        """Slicer's segment terminology string (``vtkSlicerTerminologyEntry`` serialisation)."""
        scheme, cat_code, cat_meaning = self.category
        return (
            f"Segmentation category and type - 3D Slicer General Anatomy list~{scheme}^{cat_code}^{cat_meaning}"
            f"~SCT^{self.code}^{self.meaning}~^^~Anatomic codes - DICOM master list~^^~^^"
        )


# Vertebra names in cranio-caudal order with VerSe label values; T13 and L6 are transitional.
VERTEBRA_LABELS = {
    **{f"C{i}": i for i in range(1, 8)},
    **{f"T{i}": 7 + i for i in range(1, 13)},
    **{f"L{i}": 19 + i for i in range(1, 7)},
    "S1": 26,
    "T13": 28,
}
STANDARD_ORDER = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1"]

_VERTEBRA_CODES = {
    "C1": "14806007", "C2": "39976000", "C3": "113205007", "C4": "5329002", "C5": "36978003",
    "C6": "36054005", "C7": "87391001", "T1": "64864005", "T2": "53733008", "T3": "1626008",
    "T4": "73071006", "T5": "56401006", "T6": "45296009", "T7": "62487009", "T8": "11068009",
    "T9": "82687006", "T10": "7610001", "T11": "12989004", "T12": "23215003", "L1": "66794005",
    "L2": "14293000", "L3": "36470004", "L4": "11994002", "L5": "49668003", "S1": "65985001",
}
_REGION_COLORS = {  # base colour per region; levels get lighter going down so neighbours differ
    "C": (0.90, 0.40, 0.35), "T": (0.40, 0.65, 0.90), "L": (0.95, 0.80, 0.30), "S": (0.55, 0.80, 0.45),
}


def _vertebra_color(name: str) -> tuple[float, float, float]:
    region = name[0]
    number = int(name[1:])
    # alternate shade between neighbours: telling adjacent levels apart is what users need
    shade = 1.0 if number % 2 else 0.72
    return tuple(round(c * shade, 3) for c in _REGION_COLORS[region])


def _vertebra(name: str) -> Structure:
    code = _VERTEBRA_CODES.get(name, "51282000")  # T13 / L6 fall back to "vertebra"
    meaning = f"{name} vertebra" if name in _VERTEBRA_CODES else "Vertebra"
    return Structure(name, code, meaning, CATEGORY_ANATOMY, _vertebra_color(name), VERTEBRA_LABELS[name])


VERTEBRAE = {name: _vertebra(name) for name in VERTEBRA_LABELS}

OTHER_STRUCTURES = {
    s.name: s
    for s in (
        # label values of the synthetic bony pelvis (spine_pelvis): outside VerSe's 1-28, S1 keeps 26
        Structure("Sacrum", "54735007", "Sacrum", CATEGORY_ANATOMY, (0.45, 0.70, 0.40), 40),
        Structure("Coccyx", "64688005", "Coccyx", CATEGORY_ANATOMY, (0.40, 0.60, 0.35), 41),
        Structure("Left ilium", "22356005", "Ilium", CATEGORY_ANATOMY, (0.80, 0.65, 0.50), 42),
        Structure("Right ilium", "22356005", "Ilium", CATEGORY_ANATOMY, (0.70, 0.55, 0.45), 43),
        Structure("Vertebra", "51282000", "Vertebra", CATEGORY_ANATOMY, (0.90, 0.85, 0.70)),
        Structure("Intervertebral disc", "360499006", "Intervertebral disc", CATEGORY_ANATOMY, (0.55, 0.75, 0.95)),
        Structure("Spinal cord", "2748008", "Spinal cord", CATEGORY_ANATOMY, (1.00, 0.95, 0.55)),
        Structure("Brain", "12738006", "Brain", CATEGORY_ANATOMY, (0.85, 0.70, 0.65)),
        Structure("Grey matter", "389081007", "Grey matter", CATEGORY_TISSUE, (0.60, 0.60, 0.60)),
        Structure("White matter", "389080008", "White matter", CATEGORY_TISSUE, (0.95, 0.95, 0.90)),
        Structure("Cerebrospinal fluid", "65216001", "Cerebrospinal fluid", CATEGORY_TISSUE, (0.35, 0.60, 0.95)),
        Structure("Lesion", "52988006", "Lesion", CATEGORY_ALTERED, (0.95, 0.25, 0.20)),
        Structure("Neoplasm", "108369006", "Neoplasm", CATEGORY_ALTERED, (0.85, 0.20, 0.70)),
        Structure("Oedema", "79654002", "Oedema", CATEGORY_ALTERED, (0.95, 0.75, 0.20)),
        Structure("Necrosis", "6574001", "Necrosis", CATEGORY_ALTERED, (0.35, 0.20, 0.15)),
    )
}

VERTEBRA_NAMES_BY_LABEL = {label: name for name, label in VERTEBRA_LABELS.items()}
#: Bones around the spine with fixed label values in the generator's ``SpineCase.structures`` map
#: ("Sacrum" there is S2-S5: S1 keeps its vertebra value 26).
PELVIS_LABELS = {name: OTHER_STRUCTURES[name].label for name in ("Sacrum", "Coccyx", "Left ilium", "Right ilium")}


def structure(name: str) -> Structure:
    """Look a structure up by name (case-insensitive); unknown names get the generic colour."""
    for table in (VERTEBRAE, OTHER_STRUCTURES):
        for key, value in table.items():
            if key.lower() == name.lower():
                return value
    if name.lower().startswith("vertebra "):  # unnamed instance "Vertebra 3": generic vertebra code
        generic = OTHER_STRUCTURES["Vertebra"]
        return Structure(name, generic.code, generic.meaning, generic.category, generic.color)
    return Structure(name, "", name, CATEGORY_ANATOMY, (0.7, 0.7, 0.7))


def vertebra_name(label: int) -> str:
    """Name for a VerSe label value; unknown values become ``Vertebra <n>``."""
    return VERTEBRA_NAMES_BY_LABEL.get(int(label), f"Vertebra {int(label)}")


def vertebra_index(name: str) -> float:
    """Position of a vertebra name along the spine (C1 = 0); transitional names slot in between."""
    if name == "T13":
        return STANDARD_ORDER.index("T12") + 0.5
    if name == "L6":
        return STANDARD_ORDER.index("L5") + 0.5
    return STANDARD_ORDER.index(name)
