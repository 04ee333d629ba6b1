""""Load sample": generated cases straight into a real MRML scene (slicer-core)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer", reason="slicer-core wheel not installed (Linux x86_64 only)")

from spinebrain.geometry import ijk_to_ras_matrix  # noqa: E402
from spinebrain.synth.cases import VERTEBRA_COLUMNS  # noqa: E402
from spinebrain_slicer.bridge import (  # noqa: E402
    get_segment_flag,
    labels_from_segmentation_node,
    points_from_markups_node,
    records_from_table_node,
)
from spinebrain_slicer.bridge.nodes import ijk_to_ras_of  # noqa: E402
from spinebrain_slicer.samples import load_brain_sample, load_spine_sample  # noqa: E402


def test_spine_sample_nodes(scene):
    nodes = load_spine_sample(scene, seed=1, modality="ct", view="lumbar", spacing=2.5)
    case = nodes["case"]
    volume, segmentation = nodes["volume"], nodes["segmentation"]
    assert volume.GetName() == "Sample spine CT"
    assert scene.GetNodeByID(volume.GetID()) is volume
    np.testing.assert_allclose(ijk_to_ras_of(volume), ijk_to_ras_matrix(case.image), atol=1e-6)

    segment_names = [segmentation.GetSegmentation().GetNthSegment(i).GetName()
                     for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
    assert sorted(segment_names) == sorted(r.name for r in case.vertebrae)
    labels, names = labels_from_segmentation_node(segmentation, volume)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(case.labels))
    assert names == case.label_names()
    for record in case.vertebrae:
        assert get_segment_flag(segmentation, f"Segment_{record.label}", "Complete") == str(record.complete).lower()

    points = points_from_markups_node(nodes["markups"])
    assert [p.label for p in points] == [p.label for p in case.points]
    np.testing.assert_allclose([p.ras for p in points], [p.ras for p in case.points], atol=1e-6)

    rows = records_from_table_node(nodes["table"], VERTEBRA_COLUMNS)
    assert [r["name"] for r in rows] == [r.name for r in case.vertebrae]
    display = volume.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (1800.0, 400.0)


def test_brain_sample_nodes(scene):
    nodes = load_brain_sample(scene, seed=2, contrasts=("t1", "flair"), lesions="ms", spacing=3.0)
    case = nodes["case"]
    assert sorted(nodes["volumes"]) == ["flair", "t1"]
    assert nodes["volumes"]["flair"].GetName() == "Sample brain FLAIR"
    reference = nodes["volumes"]["t1"]
    np.testing.assert_allclose(ijk_to_ras_of(reference), ijk_to_ras_matrix(case.tissue), atol=1e-6)
    tissue, tissue_names = labels_from_segmentation_node(nodes["tissue"], reference)
    assert set(tissue_names.values()) == {"Grey matter", "White matter", "Cerebrospinal fluid"}
    np.testing.assert_array_equal(sitk.GetArrayFromImage(tissue), sitk.GetArrayFromImage(case.tissue))
    lesions, lesion_names = labels_from_segmentation_node(nodes["lesions"], reference)
    assert list(lesion_names.values()) == ["Lesion"]
    assert np.count_nonzero(sitk.GetArrayFromImage(lesions)) == np.count_nonzero(sitk.GetArrayFromImage(case.lesions)) > 0
    assert nodes["table"].GetNumberOfRows() >= 5
