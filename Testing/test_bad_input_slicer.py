"""The Slicer Logic gives the same answer to bad input as the command line: it calls the same core checks.

A mask, a label map or wrapped CT numbers in a volume node, and a user point far off the scan, are
refused by ``SpineLabelLogic.run`` with the sentence the CLI prints, and the scene is left as it was
(no new node). Runs on real MRML from the slicer-core wheel.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from bad_input_support import assert_clear_message, ct_like, volume

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed (Linux x86_64 only)")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "SpineLabel"))  # as Slicer does for a module

from SpineLabelLib.logic import SpineLabelLogic  # noqa: E402

from spinebrain.errors import InputError, ModelError  # noqa: E402
from spinebrain.points import LabelledPoint  # noqa: E402
from spinebrain.validate import check_plausible  # noqa: E402
from spinebrain_slicer import bridge  # noqa: E402

NOT_SCANS = {
    "mask": (lambda: volume((ct_like() > 0).astype(np.uint8)), "mask"),
    "label_map": (lambda: volume((np.arange(16 * 24 * 24).reshape(16, 24, 24) // 1000 % 7).astype(np.uint8)),
                  "label map"),
    "ct_as_uint16": (lambda: volume(ct_like().astype(np.uint16)), "unsigned"),
}


@pytest.fixture(scope="module")
def lumbar_model():
    from spinebrain.spinelabel.pipeline import load_spine_label_model

    try:
        return load_spine_label_model("lumbar")
    except ModelError as error:
        pytest.skip(f"no lumbar spine-label model installed: {error}")


def _node_ids(scene) -> list[str]:
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


@pytest.mark.parametrize("case", list(NOT_SCANS))
def test_logic_refuses_what_is_not_a_scan_with_the_cli_sentence(scene, lumbar_model, case):
    make, words = NOT_SCANS[case]
    image = make()
    node = bridge.volume_node_from_image(scene, image, case)
    before = _node_ids(scene)
    with pytest.raises(InputError) as from_slicer:
        SpineLabelLogic(scene).run(node, region="lumbar", model=lumbar_model)
    with pytest.raises(InputError) as from_core:
        check_plausible(image, name="image")
    assert_clear_message(str(from_slicer.value), words)
    assert str(from_slicer.value) == str(from_core.value)  # one check, one sentence, whichever way in
    assert _node_ids(scene) == before


def test_logic_refuses_a_user_point_off_the_scan(scene, lumbar_model):
    from spinebrain.synth.spine import generate_spine

    case = generate_spine(5005, modality="ct", view="lumbar", spacing=(2.0, 2.0, 2.0))
    node = bridge.volume_node_from_image(scene, case.image, "scan")
    far = LabelledPoint("L3", (900.0, 0.0, 0.0), None, True)  # locked: the user's point
    points = bridge.markups_node_from_points(scene, [far], "Vertebrae")
    before = _node_ids(scene)
    with pytest.raises(InputError) as error:
        SpineLabelLogic(scene).run(node, points, region="lumbar", model=lumbar_model)
    assert_clear_message(str(error.value), "L3", "outside the image")
    assert _node_ids(scene) == before and points.GetNumberOfControlPoints() == 1
