"""Training engine: MONAI's SupervisedTrainer / SupervisedEvaluator with the project's handlers.

Pieces, each in one place:

* :mod:`.engine` -- :func:`run_training`: validation with any MONAI (or ignite) metric, best weights
  (``best.safetensors``), early stopping, LR schedule, metrics log (``metrics.csv`` + ``metrics.jsonl``),
  JSON-lines progress (``progress`` events "train" and one ``epoch`` event per epoch with loss, metric,
  best so far and seconds left), a resume checkpoint after every epoch (written atomically, loaded
  with MONAI's CheckpointLoader, ``weights_only``), a ``STOP`` file that ends the run keeping the best
  weights (a cancel -- terminate signal -- raises CancelledError and nothing is written), AMP on CUDA only.
* :mod:`.distributed` -- the same command alone or under ``torchrun`` (DDP; gloo on the CPU, NCCL on
  GPUs); DistributedSampler for training data; only rank 0 writes.
* :mod:`.datalist` -- MONAI-style datalists (``{"training": [{"image", "label"}], "validation": [...]}``)
  and :class:`~.datalist.LoadCased`, which prepares cases with the inference block's own
  :func:`spinebrain.inference.prepare_channels` (same spacing and normalisation as at run time).
* :mod:`.segmentation` -- the 3D segmentation recipe and its command, ``python -m spinebrain.training
  segment ...``: datalist -> patches (RandCropByPosNegLabeld + intensity augmentation) -> DiceCE loss,
  AdamW, cosine LR -> validation Dice by sliding window -> a model package whose card records the
  command, the datalist summary and the measured validation metric.

* :mod:`.from_datalist` -- ``spinebrain train datalist``: the segmentation recipe for the card tasks the
  registry lists (:attr:`spinebrain.tasks.Task.datalist_card_tasks`), labels and channels from the datalist,
  fine-tuning (:mod:`.fine_tune`: ``--init-from`` keeps the model's labels and preprocessing) and generated
  cases mixed in (:mod:`.synthetic_mix`). The Slicer Training module exports the scene's cases and runs it.

How SpineSegment / BrainSeg use it: a task whose data are image + label-map volumes calls
:func:`~.segmentation.train_segmentation` with a :class:`~.segmentation.SegmentationRecipe` (its labels,
modalities, spacing, patch size, normalisation, network), and registers
:func:`~.segmentation.add_arguments` / :func:`~.segmentation.run` as its ``train`` command. A task with
other data (2D slices, patches, heatmaps) builds its own loaders, loss and metric and calls
:func:`~.engine.run_training` directly::

    from monai.utils import set_determinism
    from spinebrain.training import EngineSettings, init_distributed, run_training, wrap_network

    context = init_distributed(device_option)            # torchrun-aware
    set_determinism(seed)
    network = wrap_network(build_network(card), context)
    outcome = run_training(network, optimizer, loss, train_loader, val_loader, DiceMetric(...),
                           EngineSettings(run_dir, max_epochs=..., metric_name="val_dice",
                                          early_stop_patience=10),
                           context, lr_scheduler=..., val_inferer=..., val_postprocessing=..., progress=progress)
    if context.is_main:
        save_model_package(out, load_best_weights(outcome), card)   # card.metrics from outcome
"""

from .datalist import LoadCased, read_datalist, split_datalist, summarise
from .distributed import DistributedContext, init_distributed, sampler_for, shutdown, unwrap, wrap_network
from .engine import EngineSettings, TrainingOutcome, as_ignite_metric, load_best_weights, run_training

__all__ = [
    "DistributedContext", "EngineSettings", "LoadCased", "TrainingOutcome", "as_ignite_metric", "init_distributed",
    "load_best_weights", "read_datalist", "run_training", "sampler_for", "shutdown", "split_datalist", "summarise",
    "unwrap", "wrap_network",
]
