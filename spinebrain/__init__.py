"""SlicerSpineBrain core library: spine labeling, vertebra segmentation and brain segmentation.

Plain Python (numpy, SimpleITK, torch, MONAI). Never imports slicer, qt or ctk, so it runs
from the command line, from a subprocess launched by Slicer, or inside Slicer's Python console.
"""

__version__ = "0.1.0"

#: Shown in the README, module help, model cards and the metadata of every written file.
RESEARCH_NOTICE = "SlicerSpineBrain: for research use only, not for diagnosis."
