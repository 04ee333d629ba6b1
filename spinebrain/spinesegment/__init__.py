"""SpineSegment: vertebra instances. For now the 2D MR vertebral-body mode (seed 001):
:mod:`.pipeline2d` (inference), :mod:`.engine2d` / :mod:`.training2d` (training), :mod:`.networks`,
:mod:`.instances` (components, splitting, names), :mod:`.metrics2d`, :mod:`.package2d`."""
