"""Synthetic training data: spine scans with exact vertebra labels (and, elsewhere, brains)."""

from spinebrain.synth.spine import (MODALITIES, TISSUE_NAMES, SpineCase, SyntheticSpineDataset, VertebraRecord,
                                    generate_spine, synthesize_from_labels)
from spinebrain.synth.spine_acquisition import ORIENTATIONS, VIEWS
from spinebrain.synth.spine_anatomy import SpineOptions

__all__ = ["MODALITIES", "ORIENTATIONS", "TISSUE_NAMES", "VIEWS", "SpineCase", "SpineOptions",
           "SyntheticSpineDataset", "VertebraRecord", "generate_spine", "synthesize_from_labels"]
