"""``python -m spinebrain.training segment ...`` (also under ``torchrun --nproc_per_node=N -m spinebrain.training``)."""

from ..cli import exit_process
from .segmentation import main

exit_process(main())
