"""3D inference block: a scan + a model package -> labels / probabilities on the scan's own grid.

The steps, each in one place:

1. :func:`.prepare.prepare_channels` -- resample to the card's ``spacing`` (SimpleITK, origin and
   direction kept), bring extra channels onto that grid, normalise each channel as the card's
   ``normalisation`` says (window / percentile / zscore / nyul / none, via :mod:`spinebrain.preprocess`).
   The training engine loads cases through the same function.
2. :func:`.sliding.infer_volume` -- MONAI ``SlidingWindowInferer`` with the card's ``patch_size``:
   overlap, Gaussian blending, ``sw_batch_size`` windows per forward pass, AMP on CUDA only, stitching
   on the CPU slab by slab (memory bounded), progress per batch of windows, cancel between windows.
3. :func:`.run.run_inference` -- the whole chain, a restart on the CPU after a GPU out-of-memory
   error (:func:`spinebrain.device.run_with_cpu_fallback`), and the way back onto the input grid
   (nearest neighbour for labels, linear for probabilities).

How a volume task (SpineSegment's 3D vertebra instances, BrainSeg's tissue and lesion maps) calls it::

    from spinebrain.models import load_network
    from spinebrain.inference import run_inference

    card, network = load_network(model_path_or_id, task="brain-tissue")  # verified package, CPU
    result = run_inference(image, network, card,                       # image: sitk.Image
                           extra_channels=[flair],                     # optional, any grid
                           device=select_device(option),               # spinebrain.device
                           output="both",                              # labels / probabilities / both
                           progress=progress,                          # spinebrain.protocol.Progress
                           cancel_event=event)                         # e.g. threading.Event
    result.labels          # sitk UInt8 map of the card's label values, on image's grid
    result.probabilities   # one sitk Float32 image per output channel, on image's grid

What the card must hold: ``spacing`` and ``patch_size`` in (i, j, k) order, ``normalisation``,
``labels`` keyed by integer value (output channel n = the n-th value ascending) and, optionally,
``output_activation`` ("softmax" default, "sigmoid" for one-channel or multi-label outputs, "none").
Networks see (batch, channels, i, j, k) tensors, the layout MONAI's image loaders give in training.
Instance separation (vertebra numbering) and 2D slice-wise use are the task's own post-processing.
"""

from .prepare import channel_specs, normalise, prepare_channels, to_model_grid
from .run import InferenceResult, label_values, output_activation, run_inference
from .sliding import WindowSettings, infer_volume, slab_ranges, window_count

__all__ = [
    "InferenceResult", "WindowSettings", "channel_specs", "infer_volume", "label_values", "normalise",
    "output_activation", "prepare_channels", "run_inference", "slab_ranges", "to_model_grid", "window_count",
]
