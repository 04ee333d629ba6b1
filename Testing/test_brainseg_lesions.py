"""BrainSeg lesions and preprocessing: metrics, quantification, location classes, Nyúl, registration, the
lesion synthesis, and the command (task both, batch, bad input) with tiny models trained here."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from brainseg_support import lesion_brain, tiny_lesion_model, tiny_tissue_model

from spinebrain.brainseg.lesion_metrics import lesion_metrics
from spinebrain.brainseg.lesions import lesion_summary, lesion_table, remove_small_lesions
from spinebrain.brainseg.preprocess import check_same_head, nyul_standardise, on_reference_grid
from spinebrain.cli import main
from spinebrain.errors import InputError

DATA = Path(os.environ.get("SPINEBRAIN_TEST_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def image_of(array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(np.asarray(array))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def cube(shape, *boxes):
    array = np.zeros(shape, np.uint8)
    for box in boxes:
        array[box] = 1
    return array


# -- metrics ------------------------------------------------------------------------------------------
def test_lesion_metrics_voxel_and_lesion_wise_on_hand_made_maps():
    # reference: lesion A (4x4x4 = 64 voxels), lesion B (2x2x2 = 8), lesion C (1 voxel, below the minimum)
    reference = cube((30, 30, 30), np.s_[2:6, 2:6, 2:6], np.s_[20:22, 20:22, 20:22], np.s_[10, 25, 25])
    # prediction: half of A (32 voxels), misses B and C, adds a false lesion D (8 voxels)
    predicted = cube((30, 30, 30), np.s_[2:4, 2:6, 2:6], np.s_[12:14, 2:4, 2:4])
    m = lesion_metrics(image_of(predicted), image_of(reference), minimum_mm3=2.0)
    assert m["dice"] == pytest.approx(2 * 32 / (40 + 73))
    assert m["tpr"] == pytest.approx(32 / 73)
    assert m["ppv"] == pytest.approx(32 / 40)
    assert m["volume difference"] == pytest.approx(100 * (40 - 73) / 73)
    assert m["reference lesions"] == 2 and m["predicted lesions"] == 2  # C is below 2 mm³
    assert m["lesion-wise tpr"] == pytest.approx(1 / 2) and m["lesion-wise ppv"] == pytest.approx(1 / 2)
    assert m["hd"] >= m["hd95"] > 0 and m["assd"] > 0
    perfect = lesion_metrics(image_of(reference), image_of(reference))
    assert perfect["dice"] == 1.0 and perfect["hd"] == 0.0 and perfect["lesion-wise tpr"] == 1.0
    assert perfect["reference lesions"] == 3  # no minimum: the single voxel counts


def test_small_lesions_are_dropped_by_volume_not_voxel_count():
    labels = image_of(cube((20, 20, 20), np.s_[2:4, 2:4, 2:4], np.s_[10, 10, 10]), spacing=(2.0, 2.0, 2.0))
    kept = sitk.GetArrayFromImage(remove_small_lesions(labels, minimum_mm3=10.0))  # 1 voxel = 8 mm³
    assert kept.sum() == 8 and kept[10, 10, 10] == 0
    assert sitk.GetArrayFromImage(remove_small_lesions(labels, 0.0)).sum() == 9


# -- quantification -------------------------------------------------------------------------------------
def tissue_with_ventricle():
    """A 40³ brain: GM rim (cortex), WM inside, a CSF 'ventricle' in the middle that does not reach the surface."""
    tissue = np.zeros((40, 40, 40), np.uint8)
    tissue[2:38, 2:38, 2:38] = 2
    tissue[5:35, 5:35, 5:35] = 3
    tissue[17:23, 17:23, 17:23] = 1
    return tissue


def test_lesion_table_volumes_centroids_and_locations():
    tissue = tissue_with_ventricle()
    lesions = np.zeros_like(tissue)
    lesions[20, 20, 23:26] = 1  # touches the ventricle: periventricular
    lesions[20, 6:8, 20] = 1  # next to the cortex: juxtacortical
    lesions[18:20, 10:12, 28:30] = 1  # 8 voxels, far from both: deep white matter
    lesions[8:10, 20:22, 10] = 1  # 4 voxels, far from both, > 5 mm below the ventricle: infratentorial
    spacing = (1.0, 1.0, 1.0)
    records = lesion_table(image_of(lesions, spacing), image_of(tissue, spacing))
    assert [r["voxels"] for r in records] == [8, 4, 3, 2]  # largest first
    assert [r["location"] for r in records] == ["deep white matter", "infratentorial", "periventricular",
                                                "juxtacortical"]
    assert records[0]["volume"] == pytest.approx(0.008)
    # centroid of the 8-voxel lesion: index (i, j, k) = (28.5, 10.5, 18.5) -> LPS -> RAS (-28.5, -10.5, 18.5)
    assert (records[0]["centroid R"], records[0]["centroid A"], records[0]["centroid S"]) == pytest.approx(
        (-28.5, -10.5, 18.5))
    summary = lesion_summary(records)
    assert summary["lesion count"] == 4 and summary["total lesion load"] == pytest.approx(0.017)
    assert summary["periventricular lesions"] == 1
    assert {r["location"] for r in lesion_table(image_of(lesions, spacing))} == {"unknown"}


# -- preprocessing ------------------------------------------------------------------------------------
def test_nyul_maps_the_landmarks_onto_normal_quantiles_and_keeps_the_order():
    rng = np.random.default_rng(0)
    array = rng.gamma(2.0, 50.0, (20, 20, 20)).astype(np.float32)  # skewed, like a brain with a bright tail
    mask = np.ones(array.shape, bool)
    result = nyul_standardise(array, mask)
    assert np.median(result) == pytest.approx(0.0, abs=0.02)
    assert np.percentile(result, 90) == pytest.approx(1.2816, abs=0.02)
    order = np.argsort(array.ravel())
    assert np.all(np.diff(result.ravel()[order]) >= -1e-6)  # monotone: no intensity swaps places


@pytest.fixture(scope="module")
def case():
    return lesion_brain()


def test_rigid_registration_recovers_a_moved_sequence(case):
    flair = case.images["flair"]
    shift = sitk.TranslationTransform(3, (6.0, -4.5, 3.0))
    coarse = sitk.Resample(flair, [int(n * 0.8) for n in flair.GetSize()], shift, sitk.sitkLinear, flair.GetOrigin(),
                           [s * 1.25 for s in flair.GetSpacing()], flair.GetDirection(), 0.0)
    registered = on_reference_grid(coarse, case.images["t1"], True, "FLAIR scan", "T1 scan")
    unregistered = on_reference_grid(coarse, case.images["t1"], False, "FLAIR scan", "T1 scan")
    brain = sitk.GetArrayViewFromImage(case.brain_mask) > 0
    truth = sitk.GetArrayViewFromImage(flair)[brain]

    def error(image):
        return float(np.mean(np.abs(sitk.GetArrayViewFromImage(image)[brain] - truth)))

    assert error(registered) < 0.6 * error(unregistered)
    check_same_head(case.images["t1"], registered, case.brain_mask, "FLAIR scan", "T1 scan")


def test_sequences_of_another_head_or_elsewhere_are_refused(case):
    other = lesion_brain(seed=11).images["flair"]
    other_on_grid = sitk.Resample(other, case.images["t1"], sitk.Transform(), sitk.sitkLinear, 0.0)
    with pytest.raises(InputError, match="does not match the anatomy|hardly covers"):
        check_same_head(case.images["t1"], other_on_grid, case.brain_mask, "FLAIR scan", "T1 scan")
    far = sitk.Image(case.images["flair"])
    far.SetOrigin([v + 500.0 for v in far.GetOrigin()])
    far = sitk.Resample(far, [n - 2 for n in far.GetSize()], sitk.Transform(), sitk.sitkLinear, far.GetOrigin(),
                        far.GetSpacing(), far.GetDirection(), 0.0)
    with pytest.raises(InputError, match="turn registration on"):
        on_reference_grid(far, case.images["t1"], False, "FLAIR scan", "T1 scan")


# -- synthesis ----------------------------------------------------------------------------------------
def test_lesion_synthesis_paints_flair_bright_t1_dark_lesions_in_white_matter(case):
    from spinebrain.brainseg.lesion_synthesis import LesionBank, LesionSettings, LesionSynthesiser

    bank = LesionBank.from_tissue_maps([case.tissue], 3.0)
    synthesiser = LesionSynthesiser(bank, LesionSettings(patch=24, p_drop_optional=0.0, p_elastic=0.0,
                                                         radius_mm=(3.0, 6.0)), spacing_mm=3.0)
    rng = np.random.default_rng(3)
    contrasts = []
    for _ in range(6):
        image, target = synthesiser.draw(rng, at_least_one=True)
        assert image.shape == (3, 24, 24, 24) and target.shape == (1, 24, 24, 24)
        lesion = target[0] == 1
        if lesion.sum() < 3:
            continue
        wm = np.zeros_like(lesion)
        wm[image[0] != 0] = True  # inside the brain; lesions replace white matter only
        contrasts.append([float(image[c][lesion].mean() - image[c][wm & ~lesion].mean()) for c in range(3)])
    contrasts = np.array(contrasts)
    assert len(contrasts) >= 3
    assert np.all(contrasts[:, 0] > 0)  # FLAIR: lesions brighter than the rest of the brain


# -- the command ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory, case):
    out = tmp_path_factory.mktemp("brain_models")
    return tiny_tissue_model(out, case), tiny_lesion_model(out, case)


@pytest.fixture(scope="module")
def scans(tmp_path_factory, case):
    folder = tmp_path_factory.mktemp("subjects")
    for subject in ("sub-01", "sub-02"):
        (folder / subject).mkdir()
        sitk.WriteImage(case.images["t1"], str(folder / subject / "T1w.nii.gz"))
        sitk.WriteImage(case.images["flair"], str(folder / subject / f"{subject}_FLAIR.nii.gz"))
    sitk.WriteImage(case.images["t2"], str(folder / "sub-02" / "t2.nii.gz"))
    return folder


@pytest.mark.slow
def test_cli_task_both_writes_segments_volumes_and_lesions(models, scans, tmp_path):
    from spinebrain.brainseg.lesions import LESION_COLUMNS
    from spinebrain.outputs import read_segmentation, read_table

    tissue, lesion = models
    out = tmp_path / "result"
    args = ["brain-seg", "--t1", str(scans / "sub-01" / "T1w.nii.gz"), "--flair",
            str(scans / "sub-01" / "sub-01_FLAIR.nii.gz"), "--task", "both", "--model", str(tissue),
            "--lesion-model", str(lesion), "--normalise", "nyul", "--out", str(out), "--device", "cpu", "--quiet"]
    assert main(args) == 0
    assert {"T1w.seg.nrrd", "T1w_volumes.csv", "T1w_lesions.csv"} <= {p.name for p in out.iterdir()}
    labels, names = read_segmentation(out / "T1w.seg.nrrd")
    assert set(names.values()) == {"Grey matter", "White matter", "Cerebrospinal fluid", "Lesion"}
    lesions = read_table(out / "T1w_lesions.csv", list(LESION_COLUMNS))
    lesion_voxels = int(np.sum(sitk.GetArrayViewFromImage(labels) == 4))
    assert sum(r["voxels"] for r in lesions) == lesion_voxels


@pytest.mark.slow
def test_batch_folder_one_summary(models, scans, tmp_path):
    tissue, lesion = models
    out = tmp_path / "batch"
    assert main(["brain-seg", "--input-dir", str(scans), "--task", "lesion", "--model", str(tissue),
                 "--lesion-model", str(lesion), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    with open(out / "summary.csv", newline="") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"sub-01", "sub-02"} and all(r["status"] == "ok" for r in rows.values())
    assert "lesions" in next(iter(rows.values()))
    assert (out / "sub-02" / "T1w_lesions.csv").is_file()


@pytest.mark.parametrize("case_kind", ["lesion without flair", "flair of another head"])
def test_bad_lesion_input_is_one_sentence_nothing_written(case_kind, models, scans, tmp_path, capsys):
    tissue, lesion = models
    args = ["brain-seg", "--t1", str(scans / "sub-01" / "T1w.nii.gz"), "--task", "lesion", "--model", str(tissue),
            "--lesion-model", str(lesion), "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"]
    if case_kind == "flair of another head":
        # generated brains all come from one template (registered, they share the anatomy): use a real head
        other = DATA / "B5_nii2mesh_t1_fast" / "bet.nii.gz"
        if not other.is_file():
            pytest.skip("B5 data not available")
        args += ["--flair", str(other)]
    assert main(args) == 2
    assert not (tmp_path / "out").exists()
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and message.endswith(".")
    assert ("FLAIR" in message) if case_kind == "lesion without flair" else ("anatomy" in message or "cover" in message)


def test_sequences_are_matched_by_file_name(tmp_path):
    from spinebrain.commands.brain_seg import match_sequences

    for name in ("sub-1_T1w.nii.gz", "sub-1_flair.nii.gz", "T1POST.nii.gz", "brainmask.nii.gz", "notes.txt",
                 "GOLD_STANDARD.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    found = match_sequences(tmp_path)
    assert {k: v.name for k, v in found.items()} == {"T1": "sub-1_T1w.nii.gz", "FLAIR": "sub-1_flair.nii.gz",
                                                     "T1C": "T1POST.nii.gz", "MASK": "brainmask.nii.gz"}
    (tmp_path / "t1_again.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="two T1"):
        match_sequences(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "B7_synthseg_label_maps").is_dir(), reason="B7 label maps not available")
def test_train_command_makes_a_lesion_package_with_its_required_inputs(tmp_path):
    from spinebrain.models import ModelCard

    out = tmp_path / "models"
    assert main(["train", "brain-seg", "--target", "lesion", "--maps", str(DATA / "B7_synthseg_label_maps"),
                 "--out", str(out), "--spacing", "4", "--patch", "16", "--epochs", "1", "--steps-per-epoch", "1",
                 "--validation-crops", "1", "--batch-size", "1", "--device", "cpu", "--threads", "1", "--quiet"]) == 0
    card = ModelCard.read(out / "brain-lesion-synth")
    assert card.task == "brain-lesion" and card.modalities == ["FLAIR", "T1", "T2"]
    assert card.extra["required_inputs"] == ["FLAIR"] and card.spacing == [4.0, 4.0, 4.0]
    assert card.metrics["epochs_run"] == 1 and "val_lesion_dice" in card.metrics


def test_evaluate_command_lesion_target_writes_every_metric(tmp_path):
    from spinebrain.brainseg.lesion_metrics import LESION_METRIC_COLUMNS
    from spinebrain.outputs import read_table

    reference = cube((20, 20, 20), np.s_[2:6, 2:6, 2:6], np.s_[12:14, 12:14, 12:14])
    predicted = cube((20, 20, 20), np.s_[2:6, 2:6, 2:6])
    sitk.WriteImage(image_of(reference), str(tmp_path / "ref.nii.gz"))
    sitk.WriteImage(image_of(predicted * 4), str(tmp_path / "pred.nii.gz"))
    out = tmp_path / "lesions.csv"
    assert main(["evaluate", "brain-seg", "--target", "lesion", "--prediction", str(tmp_path / "pred.nii.gz"),
                 "--reference", str(tmp_path / "ref.nii.gz"), "--min-lesion-size", "1", "--out", str(out),
                 "--quiet"]) == 0
    row = read_table(out, list(LESION_METRIC_COLUMNS))[0]
    assert row["dice"] == pytest.approx(2 * 64 / (64 + 72), abs=1e-4)
    assert row["lesion-wise tpr"] == pytest.approx(0.5) and row["lesion-wise ppv"] == pytest.approx(1.0)
