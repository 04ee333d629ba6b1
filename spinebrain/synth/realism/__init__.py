"""How real do the generated cases look? Real and generated cases side by side, with numbers.

For the spine: a montage (real row over generated row: same modality, same level, same plane and
the same physical field of view), intensity histograms per tissue (CT: vertebra masks vs the rest;
MR: vertebra, disc, rest) and vertebra sizes per level -- volume, a vertebral-body height proxy
along the local spine axis, a body width proxy and the oriented bounding box -- measured the same
way on real reference masks and on generated label maps, beside the published morphometry
(:mod:`spinebrain.synth.morphometry`). For the brain: a montage, intensity histograms per tissue
and lesion class, and tissue / lesion volumes.

Real cases come from the real-data folder (see /work/shared/data/README.md: spine CT A3/A5/A6,
spine MR A7/A9, VerSe labels A8; brain B2/B5/B6). Without it the report holds generated cases
only and says so. Generated cases use a coarse grid (default 2 mm) so the report takes seconds.

Body proxies: the vertebra's voxels within the anterior 35 % of its antero-posterior extent (the
body, for every level C2-S1) are projected on the local spine axis (centroid of the level above
to that of the level below) and on the left-right axis; the 2nd-98th percentile ranges are the
height and width proxies. They approximate the body's height and endplate width, not the
landmark-based measurements of the morphometry papers.
"""

from .brain import border_sharpness, brain_report, edge_density, histogram_overlap
from .common import (
    BRAIN_VOLUME_COLUMNS, INTENSITY_COLUMNS, SIZE_COLUMNS, RealismReport, default_data_dir,
)
from .spine import spine_report, vertebra_sizes

__all__ = [
    "BRAIN_VOLUME_COLUMNS", "INTENSITY_COLUMNS", "SIZE_COLUMNS", "RealismReport", "border_sharpness", "brain_report",
    "default_data_dir", "edge_density", "histogram_overlap", "spine_report", "vertebra_sizes",
]
