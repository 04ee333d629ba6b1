"""The network classes SpineLabel model cards name, by the path a card gives (no torch: a run from ONNX exports and
the Slicer Logic check cards without it). Each class is imported from there only when a torch network is built."""

#: The paper's two patch detectors (:class:`.detector.DetectorPair`, which the pipeline module hands out lazily).
DETECTOR_PAIR = "spinebrain.spinelabel.pipeline.DetectorPair"
#: The dense U-Net heatmap detector (:class:`.heatmap_network.HeatmapDetector`, handed out lazily by :mod:`.heatmap`).
HEATMAP = "spinebrain.spinelabel.heatmap.HeatmapDetector"
#: The rib classifier on planes across the spine (:class:`.rib_network.RibClassifier`).
RIBS = "spinebrain.spinelabel.rib_network.RibClassifier"
