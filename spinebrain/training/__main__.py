"""``python -m spinebrain.training segment ...`` (also under ``torchrun --nproc_per_node=N -m spinebrain.training``)."""

import sys

from .segmentation import main

sys.exit(main())
