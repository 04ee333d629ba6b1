"""Shared pieces of the BrainSeg tests: a generated brain with MS lesions and tiny models trained on it.

The models are trained here for a few steps (seconds) so the tests run the real code paths
(packages, cards, sliding windows) without the bundled weights; what they segment is not judged.
"""

from __future__ import annotations

import torch

from spinebrain.synth.brain import generate_brain

SPACING = 3.0


def lesion_brain(seed: int = 5):
    """A skull-stripped generated brain with T1, FLAIR and T2 and MS-like lesions, on a 3 mm grid."""
    return generate_brain(seed, ("t1", "flair", "t2"), lesions="ms", spacing=SPACING)


def tiny_tissue_model(out, case):
    from spinebrain.brainseg.synthesis import bank_from_tissue_maps
    from spinebrain.brainseg.training import TissueRecipe, train_tissue

    torch.set_num_threads(1)
    bank = bank_from_tissue_maps([case.tissue], spacing=SPACING)
    recipe = TissueRecipe(maps="", out=str(out), model_id="tissue-tiny", spacing=SPACING, patch=24, epochs=1,
                          steps_per_epoch=2, batch_size=1, validation_crops=1, device="cpu")
    return train_tissue(recipe, banks=(bank, bank))


def tiny_lesion_model(out, case):
    from spinebrain.brainseg.lesion_synthesis import LesionBank
    from spinebrain.brainseg.lesion_training import LesionRecipe, train_lesion

    torch.set_num_threads(1)
    bank = LesionBank.from_tissue_maps([case.tissue], SPACING)
    recipe = LesionRecipe(maps="", out=str(out), model_id="lesion-tiny", spacing=SPACING, patch=24, epochs=1,
                          steps_per_epoch=2, batch_size=1, validation_crops=1, device="cpu",
                          run_dir=str(out / "run"))
    return train_lesion(recipe, banks=(bank, bank))
