"""Model packages: a folder ``<model-id>/`` with ``model_card.json`` and verified weights.

* :mod:`.card` -- :class:`ModelCard`, the JSON description of a model.
* :mod:`.package` -- :func:`save_model_package` / :func:`read_package` of one folder (sha256 checked
  before deserialising; ``model.pt`` only through ``torch.load(weights_only=True)``).
* :mod:`.network` -- :func:`build_network` / :func:`load_network`: rebuild the network from the card.
* :mod:`.registry` -- :class:`ModelRegistry`: bundled and user folders, search order, install, and
  :func:`load_model_package` (a folder, an id or a task's default). Imports go card <- package <-
  registry <- network, never back.
"""

from .card import CARD_FILE, KNOWN_TASKS, ModelCard
from .network import build_network, load_network
from .package import WEIGHTS_FILES, read_package, save_model_package, sha256_file, verify_weights
from .registry import (
    BUNDLED_DIR_ENV, USER_DIR_ENV, ModelEntry, ModelRegistry, default_bundled_dir, default_user_dir,
    load_model_package, resolve_package,
)

__all__ = [
    "BUNDLED_DIR_ENV", "CARD_FILE", "KNOWN_TASKS", "USER_DIR_ENV", "WEIGHTS_FILES", "ModelCard", "ModelEntry",
    "ModelRegistry", "build_network", "default_bundled_dir", "default_user_dir", "load_model_package",
    "load_network", "read_package", "resolve_package", "save_model_package", "sha256_file", "verify_weights",
]
