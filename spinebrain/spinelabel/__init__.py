"""SpineLabel: vertebra detection (CNN detectors on sagittal slices) and labeling (parts-based graphical model)."""
