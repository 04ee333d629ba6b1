"""SpineLabel: vertebra detection (CNN detectors on sagittal slices) and labeling (parts-based graphical model).

Labeling core (pure numpy, no image I/O):
    graph       -- the shape model (fit_shape_model) and the labelling of detections (label_candidates)
    operations  -- label shift, rename-and-propagate, re-solve with the user's points fixed
    metrics     -- per-vertebra evaluation (evaluate_points, aggregate)
"""
