"""Slice thickness: the shipped models name thick slices with a warning (across the sagittal plane, or along the
spine) and refuse slices thicker across the sagittal plane than their cards allow."""

from __future__ import annotations

import pytest
import SimpleITK as sitk

from spinebrain.errors import InputError
from spinebrain.spinelabel.metrics import label_at

from spinelabel_support import shipped_lumbar_default, shipped_whole


@pytest.mark.parametrize("shipped, named_mm, refused_mm, limit_mm", [
    (shipped_lumbar_default, 9.0, 11.0, 10.0),  # the lumbar default
    (shipped_whole, 10.5, 11.5, 11.0),  # the whole-spine model names what the lumbar default refuses
])
def test_shipped_models_name_thick_sagittal_slices_with_a_warning_and_refuse_thicker(shipped, named_mm, refused_mm,
                                                                                      limit_mm):
    from spinebrain.spinelabel.pipeline import label_spine
    from spinebrain.synth.spine import generate_spine

    model = shipped()
    case = generate_spine(4004, modality="t2", view="lumbar", spacing=(1.5, 1.5, named_mm), orientation="sagittal")
    result = label_spine(case.image, model)
    assert any(f"{named_mm:.1f} mm thick" in w and "check them" in w for w in result.warnings)
    right = [p.label for p in result.points if label_at(case.labels, p.ras) == p.label]
    assert len(right) >= 5 and len(right) >= 0.8 * len(result.points)
    thicker = generate_spine(4004, modality="t2", view="lumbar", spacing=(1.5, 1.5, refused_mm), orientation="sagittal")
    with pytest.raises(InputError, match=f"{refused_mm:.1f} mm thick across the sagittal plane, more than the "
                                         f"{limit_mm:.1f} mm"):
        label_spine(thicker.image, model)


@pytest.mark.parametrize("direction, spacing, warned", [
    ((1, 0, 0, 0, 1, 0, 0, 0, 1), (1.0, 1.0, 8.0), ["axial slices (along the spine) are 8.0 mm"]),  # axial, 8 mm
    ((1, 0, 0, 0, 1, 0, 0, 0, 1), (1.0, 1.0, 5.0), []),  # a routine axial CT
    ((0, 0, 1, 1, 0, 0, 0, 1, 0), (1.0, 1.0, 8.0), ["sagittal slices are 8.0 mm"]),  # slices across R
    ((1, 0, 0, 0, 0, 1, 0, 1, 0), (1.0, 1.0, 8.0), ["coronal slices (front to back) are 8.0 mm"]),  # across A
    ((0, 0, 1, 1, 0, 0, 0, 1, 0), (1.0, 7.0, 8.0), ["sagittal slices are 8.0 mm", "axial slices (along the spine) "
                                                     "are 7.0 mm"]),  # coarse along S as well
])
def test_thick_sagittal_coronal_or_axial_slices_are_named_with_a_warning(direction, spacing, warned):
    from spinebrain.spinelabel.pipeline import thick_slice_warnings

    image = sitk.Image(8, 8, 8, sitk.sitkFloat32)
    image.SetDirection(direction)
    image.SetSpacing(spacing)
    warnings = thick_slice_warnings(image, shipped_lumbar_default())
    assert len(warnings) == len(warned)
    assert all(text in warning and "check them" in warning for text, warning in zip(warned, warnings))
