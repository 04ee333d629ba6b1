"""SpineLabel detectors: dense = patch classifier, model-card round trip, a real small training run, candidates."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from spinebrain.errors import InputError
from spinebrain.models import ModelCard, build_network, load_network, save_model_package
from spinebrain.spinelabel.candidates import (
    Candidate, Detection, attach_anchor, candidates_from_maps, detections_from_maps, merge_nearby, slice_components,
)
from spinebrain.spinelabel.detector import (
    ARCHITECTURE, VertebraDetector, detect_dense, detect_slab, extract_patches, normalise_intensities,
    sample_training_patches, train_detector, training_patches_from_slab,
)
from spinebrain.spinelabel.slices import SagittalSlab
from spinebrain.spinelabel.targets import BACKGROUND, CENTRE, pixel_classes

SMALL = {"channels": (8, 16), "fc": 32}


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one thread (and do not fight parallel test workers for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def patch_probabilities(model, array, rows, cols):
    patches = torch.from_numpy(extract_patches(array, rows, cols, model.patch))[:, None]
    with torch.no_grad():
        return torch.softmax(model.classify_patches(patches), 1)[:, 1].numpy()


@pytest.mark.parametrize("patch", [24, 32])
def test_dense_map_equals_the_patch_classifier_at_every_sampled_pixel(patch, one_thread):
    torch.manual_seed(patch)
    model = VertebraDetector(patch=patch, **SMALL).eval()
    rng = np.random.default_rng(0)
    array = rng.random((37, 29)).astype(np.float32)
    dense = detect_dense(model, array)
    assert dense.shape == array.shape

    rows = np.r_[0, 36, 0, 36, rng.integers(0, 37, 30)]  # corners (patches mostly padding) and inside
    cols = np.r_[0, 0, 28, 28, rng.integers(0, 29, 30)]
    expected = patch_probabilities(model, array, rows, cols)
    assert np.allclose(dense[rows, cols], expected, atol=1e-5)
    assert expected.std() > 1e-4  # the classifier really depends on its patch

    coarse = detect_dense(model, array, full_resolution=False)  # stride-4 map, interpolated
    on_grid = np.ix_(np.arange(0, 37, 4), np.arange(0, 29, 4))
    assert coarse.shape == array.shape and np.allclose(coarse[on_grid], dense[on_grid], atol=1e-5)


def test_model_card_rebuilds_the_detector_with_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = VertebraDetector(patch=32, **SMALL).eval()
    assert model.config["architecture"] == ARCHITECTURE
    card = ModelCard(
        id="tiny-c2", task="spine-label", version="1.0", labels={"0": "other", "1": "C2 centre"},
        modalities=["MR"], spacing=[1.0, 1.0], patch_size=[32, 32], normalisation={"method": "percentile"},
        network=model.config, region="cervical",
    )
    folder = save_model_package(tmp_path, model.state_dict(), card)
    loaded_card, loaded = load_network(folder, task="spine-label")
    assert isinstance(loaded, VertebraDetector) and loaded.kwargs == model.kwargs
    array = np.random.default_rng(1).random((40, 33)).astype(np.float32)
    assert np.array_equal(detect_dense(loaded, array), detect_dense(model, array))
    assert not np.allclose(detect_dense(build_network(loaded_card), array), detect_dense(model, array))


def test_detector_refuses_impossible_shapes():
    with pytest.raises(ValueError, match="too small"):
        VertebraDetector(patch=16)
    with pytest.raises(InputError, match="2D"):
        detect_dense(VertebraDetector(patch=24, **SMALL), np.zeros((2, 30, 30), np.float32))
    with pytest.raises(InputError, match="no training patches"):
        train_detector(np.zeros((0, 24, 24)), np.zeros(0))
    with pytest.raises(InputError, match="expects 32"):
        train_detector(np.zeros((4, 24, 24)), np.zeros(4), model=VertebraDetector(patch=32, **SMALL))


def test_normalise_intensities_maps_percentiles_to_the_unit_range():
    array = np.linspace(-1000, 3000, 1001).reshape(7, 143)
    scaled = normalise_intensities(array)
    assert scaled.dtype == np.float32 and scaled.min() == 0.0 and scaled.max() == 1.0
    assert np.isclose(scaled[3, 71], 0.5, atol=0.01)
    assert not normalise_intensities(np.full((4, 4), 7.0)).any()


# -- a real, small training run on synthetic 2D spines ------------------------------------------
def synthetic_spine(seed, shape=(96, 64), spacing=17, height=12, width=16):
    """Sagittal-like image at 2 mm: a column of bright rounded blocks (bodies) with dark gaps (discs)."""
    rng = np.random.default_rng(seed)
    image = 0.3 + 0.1 * rng.standard_normal(shape)
    rows, cols = np.indices(shape)
    column, first = rng.uniform(24, 40), rng.uniform(6, 14)
    points = []
    for n in range(int((shape[0] - first - 4) // spacing) + 1):
        centre = (first + n * spacing, column + 1.5 * n)  # a slight tilt, as a lordosis would give
        body = (np.abs(rows - centre[0]) <= height / 2) & (np.abs(cols - centre[1]) <= width / 2)
        image[body] = 0.8 + 0.1 * rng.standard_normal(body.sum())
        points.append(centre)
    image[:, int(column + width)] += 0.4  # a bright line behind the bodies, so "bright" is not enough
    return ndimage.gaussian_filter(image, 1.0).astype(np.float32), np.array(points)


def single_slice_slab(image, pixel_mm=2.0) -> SagittalSlab:
    matrix = np.eye(4)
    matrix[:3, :3] = np.array([[0, 0, pixel_mm], [-pixel_mm, 0, 0], [0, -pixel_mm, 0]], float)
    matrix[:3, 3] = [5.0, 80.0, 100.0]
    return SagittalSlab(image[None], np.array([5.0]), pixel_mm, matrix, 0)


def test_training_lowers_the_loss_and_finds_the_vertebrae_of_an_unseen_image(one_thread):
    rng = np.random.default_rng(0)
    patches, labels = [], []
    for seed in range(3):
        image, points = synthetic_spine(seed)
        classes = pixel_classes(image.shape, points, pixel_mm=2.0)
        p, l = sample_training_patches(image, classes, 24, rng)
        patches.append(p)
        labels.append(l)
    labels = np.concatenate(labels)
    assert np.isclose(labels.mean(), 0.25, atol=0.02)  # balanced: 1 positive to 3 kinds of negative

    torch.manual_seed(0)
    epochs = []
    model, losses = train_detector(np.concatenate(patches), labels, VertebraDetector(24, **SMALL),
                                   epochs=5, batch_size=32, learning_rate=0.01, callback=lambda e, _: epochs.append(e))
    assert epochs == list(range(5)) and not model.training
    assert losses[-1] < 0.6 * losses[0]

    image, points = synthetic_spine(10)
    classes = pixel_classes(image.shape, points, pixel_mm=2.0)
    probability = detect_dense(model, image)
    assert probability[classes == CENTRE].mean() > probability[classes == BACKGROUND].mean() + 0.5

    # end to end: the strongest candidates sit on the true centres
    slab = single_slice_slab(image)
    candidates = candidates_from_maps(probability[None], slab)
    truth = slab.pixel_to_ras(0, points[:, 0], points[:, 1])
    strong = [c for c in candidates if c.probability > 0.5]
    assert len(strong) == len(truth)
    nearest = [np.linalg.norm(truth - c.position, axis=1) for c in strong]
    assert sorted(np.argmin(d) for d in nearest) == list(range(len(truth)))  # one candidate per vertebra
    assert max(d.min() for d in nearest) < 4.5  # mm: within about two pixels of the centre


def reference_training(patches, labels, model, epochs, batch_size, learning_rate, seed):
    """The paper loop written out by hand (the loop the engine replaced, commit 6873769): one global seeded
    stream for the shuffle and the dropout, zero-grad / forward / cross-entropy / backward / step / schedule."""
    patches, labels = torch.as_tensor(patches[:, None]), torch.as_tensor(labels)
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.train()
        optimiser = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9, nesterov=True,
                                    weight_decay=1e-4)
        steps = epochs * -(-len(labels) // batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps, eta_min=0.05 * learning_rate)
        for _ in range(epochs):
            order, total = torch.randperm(len(labels)), 0.0
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                loss = torch.nn.functional.cross_entropy(model.classify_patches(patches[batch]), labels[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                total += loss.item() * len(batch)
            losses.append(total / len(labels))
    return model.eval(), losses


def test_engine_training_gives_the_hand_written_loops_weights_bit_for_bit(one_thread):
    """The engine (MONAI SupervisedTrainer) must not change what the detectors learn: same order, same
    dropout masks, same loss terms, same schedule, so the same weights (a last batch smaller than the rest)."""
    rng = np.random.default_rng(3)
    patches = rng.random((70, 24, 24), dtype=np.float32)
    labels = (patches[:, 10:14, 10:14].mean(axis=(1, 2)) > 0.5).astype(np.int64)
    torch.manual_seed(1)
    initial = VertebraDetector(24, **SMALL).state_dict()
    models = [VertebraDetector(24, **SMALL) for _ in range(2)]
    for model in models:
        model.load_state_dict(initial)
    global_state = torch.get_rng_state()
    engine, engine_losses = train_detector(patches, labels, models[0], epochs=3, batch_size=16, learning_rate=0.05,
                                           seed=5)
    assert torch.equal(torch.get_rng_state(), global_state)  # the caller's random stream is left alone
    reference, reference_losses = reference_training(patches, labels, models[1], 3, 16, 0.05, seed=5)
    assert engine_losses == pytest.approx(reference_losses, rel=1e-6)
    trained, expected = engine.state_dict(), reference.state_dict()
    assert not torch.equal(trained["output.conv.weight"], initial["output.conv.weight"])  # it did train
    assert all(torch.equal(trained[name], expected[name]) for name in expected)


def test_slab_training_patches_use_the_points_of_each_slice_and_the_anchor(one_thread):
    image, points = synthetic_spine(3)
    slab = three_slice_slab(image.shape, pixel_mm=2.0)
    slab.arrays = np.stack([image[::-1], image, image[::-1]])
    points_ras = slab.pixel_to_ras(1, points[:, 0], points[:, 1])  # annotated on the middle slice only
    rng = np.random.default_rng(0)
    patches, labels = training_patches_from_slab(slab, points_ras, 24, rng)
    centre = pixel_classes(image.shape, slab.ras_to_pixel(points_ras)[:, 1:], 2.0) == CENTRE
    assert labels.sum() == centre.sum() and len(labels) == 4 * centre.sum()
    normalised = normalise_intensities(slab.arrays)[1]
    rows, cols = np.nonzero(centre)
    expected = extract_patches(normalised, rows, cols, 24)
    assert np.allclose(np.sort(patches[labels == 1].reshape(len(rows), -1), axis=0),
                       np.sort(expected.reshape(len(rows), -1), axis=0))

    _, anchor_labels = training_patches_from_slab(slab, points_ras, 32, rng, anchor_ras=points_ras[-1])
    anchor_only = pixel_classes(image.shape, points, 2.0, anchor_index=len(points) - 1) == CENTRE
    assert 0 < anchor_labels.sum() == anchor_only.sum() < centre.sum()

    model = VertebraDetector(24, **SMALL)
    maps = detect_slab(model, slab)
    assert maps.shape == slab.arrays.shape and np.allclose(maps[1], detect_dense(model, normalised))


# -- candidates ------------------------------------------------------------------------------------
def disc_map(shape, centres, radius, value=0.9):
    rows, cols = np.indices(shape)
    result = np.zeros(shape)
    for r, c in centres:
        result[np.hypot(rows - r, cols - c) <= radius] = value
    return result


def three_slice_slab(shape=(40, 30), pixel_mm=1.0, step_mm=4.0) -> SagittalSlab:
    matrix = np.eye(4)
    matrix[:3, :3] = np.array([[0, 0, step_mm], [-pixel_mm, 0, 0], [0, -pixel_mm, 0]], float)
    matrix[:3, 3] = [-4.0, 20.0, 50.0]
    return SagittalSlab(np.zeros((3, *shape), np.float32), np.array([-4.0, 0.0, 4.0]), pixel_mm, matrix, 1)


def test_components_of_neighbouring_slices_merge_into_one_3d_candidate():
    slab = three_slice_slab()
    maps = np.stack([
        disc_map((40, 30), [(10, 10)], 3, 0.8),
        disc_map((40, 30), [(11, 10), (30, 20)], 3, 0.9) + disc_map((40, 30), [(30, 5)], 1, 0.7),
        disc_map((40, 30), [(12, 11)], 3, 1.0),
    ])
    detections = detections_from_maps(maps, slab, merge_distance_mm=4.0)
    assert [d.slices for d in detections] == [(0, 1, 2), (1,), (1,)]
    merged, lone, small = detections
    area = (disc_map((40, 30), [(20, 15)], 3) > 0).sum()  # pixels of one radius-3 disc
    assert merged.area_px == 3 * area and lone.area_px == area and small.area_px == 5
    assert merged.probability == 1.0 and np.isclose(lone.probability, 1 / 3)
    assert np.isclose(small.probability, 5 / (3 * area))
    assert np.isclose(merged.mean_probability, 0.9)
    expected = slab.pixel_to_ras(np.array([0, 1, 2]), np.array([10, 11, 12]), np.array([10, 10, 11])).mean(axis=0)
    assert np.allclose(merged.position, expected)

    # components further apart than the merge distance stay separate; below the threshold nothing is found
    apart = np.stack([disc_map((40, 30), [(10, 10)], 3), disc_map((40, 30), [(10, 20)], 3), np.zeros((40, 30))])
    assert len(detections_from_maps(apart, slab, merge_distance_mm=4.0)) == 2
    assert detections_from_maps(0.4 * apart, slab) == []
    candidates = candidates_from_maps(maps, slab, merge_distance_mm=4.0)
    assert isinstance(candidates[0], Candidate) and candidates[0].anchor_probability == 0.0
    with pytest.raises(InputError, match="do not match"):
        detections_from_maps(maps[:2], slab)


def test_slice_components_gives_centroid_area_and_mean_probability():
    probability = disc_map((20, 20), [(5.0, 6.0)], 2, 0.75) + disc_map((20, 20), [(15, 15)], 0.5, 0.6)
    (row, col, area, mean), (_, _, single, _) = slice_components(probability)
    assert (row, col) == (5.0, 6.0) and area == 13 and np.isclose(mean, 0.75) and single == 1
    assert len(slice_components(probability, min_area_px=2)) == 1


def test_anchor_detections_mark_the_nearest_candidate_or_add_one():
    candidates = [Candidate(np.array([0.0, 0.0, 0.0]), 1.0), Candidate(np.array([0.0, 0.0, -30.0]), 0.8)]
    near = Detection(np.array([0.0, 2.0, -31.0]), 1.0, 0.85, 40, (1,))
    far = Detection(np.array([0.0, 0.0, -90.0]), 0.5, 0.6, 20, (1,))
    result, anchor = attach_anchor(candidates, [near, far], distance_mm=10.0)
    assert anchor == 1 and result[1].anchor_probability == 0.85 and result[0].anchor_probability == 0.0
    assert len(result) == 3 and np.allclose(result[2].position, far.position) and result[2].anchor_probability == 0.6
    assert candidates[1].anchor_probability == 0.0  # the input list is left as it was
    unchanged, none = attach_anchor(candidates, [])
    assert none is None and [c.probability for c in unchanged] == [1.0, 0.8]


def test_stray_anchor_answers_can_be_dropped():
    candidates = [Candidate(np.array([0.0, 0.0, 0.0]), 1.0)]
    far = Detection(np.array([0.0, 80.0, -90.0]), 0.5, 0.9, 20, (1,))
    result, anchor = attach_anchor(candidates, [far], distance_mm=10.0, add_unmatched=False)
    assert anchor is None and len(result) == 1 and result[0].anchor_probability == 0.0


def test_close_detections_merge_into_one_body():
    big = Detection(np.array([0.0, 0.0, 0.0]), 1.0, 0.9, 30, (1,))
    split = Detection(np.array([0.0, 0.0, -6.0]), 0.33, 0.8, 10, (2,))
    other = Detection(np.array([0.0, 0.0, -35.0]), 0.5, 0.7, 15, (1,))
    merged = merge_nearby([split, other, big], distance_mm=12.0)
    assert len(merged) == 2
    assert np.allclose(merged[0].position, [0.0, 0.0, -1.5]) and merged[0].area_px == 40 and merged[0].slices == (1, 2)
    assert merged[0].probability == 1.0 and np.isclose(merged[1].probability, 15 / 40)
