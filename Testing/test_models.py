"""Model packages (card, save/load, verification, safe deserialisation) and the model registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from monai.networks.nets import BasicUNet

from spinebrain import RESEARCH_NOTICE, __version__
from spinebrain.errors import CancelledError, ModelError
from spinebrain.models import (
    CARD_FILE, ModelCard, ModelRegistry, build_network, default_bundled_dir, default_user_dir, load_model_package,
    load_network, save_model_package, sha256_file,
)
from spinebrain.models import package as package_module

NETWORK = {"architecture": "BasicUNet",
           "kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "features": [4, 4, 8, 8, 16, 4],
                      "norm": ["batch", {}]}}


def make_card(model_id="tiny-seg", task="spine-segment", region=None, **changes) -> ModelCard:
    fields = dict(
        id=model_id, task=task, version="1.0", labels={"0": "background", "1": "vertebra"}, modalities=["CT"],
        spacing=[1.0, 1.0, 1.0], patch_size=[16, 16, 16], normalisation={"method": "zscore"},
        network=json.loads(json.dumps(NETWORK)), region=region, validated_modalities=["CT"],
        training_data="synthetic spines", training_command="spinebrain train spine-segment",
        metrics={"dice": 0.9, "measured_on": "synthetic test set"},
    )
    fields.update(changes)
    return ModelCard(**fields)


def tiny_network(seed=0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return BasicUNet(**NETWORK["kwargs"]).eval()


def save_tiny(folder, model_id="tiny-seg", task="spine-segment", region=None, weights_format="safetensors",
              **changes) -> Path:
    """A small but real package; the weights are a tiny tensor dict (enough for card/registry tests)."""
    card = make_card(model_id, task, region, **changes)
    return save_model_package(folder, {"weight": torch.arange(6.0).reshape(2, 3)}, card, weights_format)


# -- round trip with a real MONAI network ---------------------------------------------------------
@pytest.mark.parametrize("weights_format", ["safetensors", "pt"])
def test_round_trip_rebuilds_network_with_identical_outputs(tmp_path, weights_format):
    network = tiny_network()
    card = make_card()
    folder = save_model_package(tmp_path, network.state_dict(), card, weights_format=weights_format)

    assert folder == tmp_path / "tiny-seg"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-seg"]  # no staging folder left behind
    weights = folder / ("model.safetensors" if weights_format == "safetensors" else "model.pt")
    assert card.sha256 == sha256_file(weights) and card.weights_file == weights.name

    loaded_card, state_dict = load_model_package(folder, task="spine-segment")
    assert loaded_card.to_dict() == card.to_dict()
    rebuilt = build_network(loaded_card)
    rebuilt.load_state_dict(state_dict)
    rebuilt.eval()
    image = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(rebuilt(image), network(image))
        # a freshly initialised network differs: the weights really came from the package
        assert not torch.equal(tiny_network(seed=1)(image), network(image))

    card_again, on_cpu = load_network(folder, task="spine-segment", device="cpu")
    with torch.no_grad():
        assert torch.equal(on_cpu(image), network(image))
    assert not on_cpu.training


def test_card_json_keeps_unknown_keys_and_defaults(tmp_path):
    data = make_card().to_dict()
    data["sha256"] = "0" * 64
    data["future_field"] = {"nested": [1, 2]}
    card = ModelCard.from_json(json.dumps(data))
    assert card.extra == {"future_field": {"nested": [1, 2]}}
    assert json.loads(card.to_json())["future_field"] == {"nested": [1, 2]}
    assert card.research_notice == RESEARCH_NOTICE and card.software_version == __version__

    card.sha256 = ""
    folder = save_model_package(tmp_path, {"w": torch.ones(2)}, card)
    written = json.loads((folder / CARD_FILE).read_text())
    assert written["future_field"] == {"nested": [1, 2]} and written["sha256"] == card.sha256


def test_card_metrics_summary():
    assert make_card().metrics_summary() == "dice 0.9 on synthetic test set"
    assert make_card(metrics={}).metrics_summary() == "not measured"


@pytest.mark.parametrize("missing", ["task", "sha256", "network"])
def test_card_without_required_key_is_refused(missing):
    data = make_card().to_dict()
    data["sha256"] = "a" * 64
    del data[missing]
    with pytest.raises(ModelError, match=f"lacks the required key.*{missing}"):
        ModelCard.from_dict(data)


@pytest.mark.parametrize("changes, problem", [
    ({"id": "../escape"}, "invalid id"),
    ({"spacing": [1.0, -1.0, 1.0]}, "invalid spacing"),
    ({"patch_size": [16, 16.5, 16]}, "invalid patch_size"),
    ({"modalities": []}, "no input modalities"),
    ({"network": {"kwargs": {}}}, "no network architecture"),
])
def test_card_validation_names_the_bad_field(tmp_path, changes, problem):
    with pytest.raises(ModelError, match=problem):
        save_tiny(tmp_path, **changes)
    assert list(tmp_path.iterdir()) == []


# -- every ModelError case --------------------------------------------------------------------------
def test_missing_model_says_how_to_get_one(tmp_path):
    registry = ModelRegistry(bundled_dir=tmp_path / "bundled", user_dir=tmp_path / "user")
    with pytest.raises(ModelError, match=r"No model 'nope' in the user model folder .*user.* or the bundled folder "
                       r".*bundled.*'spinebrain info' lists"):
        load_model_package("nope", registry=registry)
    with pytest.raises(ModelError, match=r"No spine-label model.*spinebrain train spine-label"):
        load_model_package(None, task="spine-label", registry=registry)
    with pytest.raises(ModelError, match=r"No brain-lesion model.*spinebrain train brain-seg.*import"):
        load_model_package(None, task="brain-lesion", registry=registry)
    with pytest.raises(ModelError, match="No model package folder at"):
        load_model_package(tmp_path / "absent")


def test_a_card_task_without_a_trainer_says_import(monkeypatch):
    from spinebrain import tasks

    brain = tasks.task_for_card("brain-lesion")
    monkeypatch.setattr(type(brain), "trains", lambda self, card_task: card_task != "brain-lesion")
    message = ModelRegistry.how_to_get_model("brain-lesion", Path("/models"))
    assert message.startswith("This version cannot train brain-lesion models yet; import a model package")


def test_missing_card(tmp_path):
    folder = save_tiny(tmp_path)
    (folder / CARD_FILE).unlink()
    with pytest.raises(ModelError, match=r"is not a model package: it has no model_card.json \(it holds model.safetensors\)"):
        load_model_package(folder)


def test_corrupt_card_json(tmp_path):
    folder = save_tiny(tmp_path)
    (folder / CARD_FILE).write_text('{"id": "tiny-seg", ')
    with pytest.raises(ModelError, match="not valid JSON.*corrupted"):
        load_model_package(folder)


def test_missing_weights(tmp_path):
    folder = save_tiny(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="weights file of model 'tiny-seg' is missing"):
        load_model_package(folder)


@pytest.mark.parametrize("weights_format", ["safetensors", "pt"])
def test_tampered_weights_are_detected(tmp_path, weights_format):
    folder = save_tiny(tmp_path, weights_format=weights_format)
    weights = next(folder.glob("model.*"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="tampered or corrupted: re-download/re-train, do not use"):
        load_model_package(folder)


def test_task_mismatch(tmp_path):
    folder = save_tiny(tmp_path, task="spine-label")
    with pytest.raises(ModelError, match="'tiny-seg' is for spine-label but spine-segment was asked"):
        load_model_package(folder, task="spine-segment")


def test_unsupported_formats(tmp_path):
    folder = save_tiny(tmp_path)
    card = json.loads((folder / CARD_FILE).read_text())

    card["weights_file"] = "model.onnx"
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="unsupported format"):
        load_model_package(folder)

    card["weights_file"] = ""  # no name in the card: only an unknown file present
    (folder / CARD_FILE).write_text(json.dumps(card))
    (folder / "model.safetensors").rename(folder / "model.onnx")
    with pytest.raises(ModelError, match=r"unsupported format \(model.onnx\)"):
        load_model_package(folder)


def test_pt_that_is_not_a_state_dict_is_refused(tmp_path):
    folder = save_tiny(tmp_path, weights_format="pt")
    _replace_weights(folder, "model.pt", lambda path: torch.save([torch.ones(2)], path))
    with pytest.raises(ModelError, match="holds a list, not a state dict"):
        load_model_package(folder)


class _Payload:
    """Unpickling this creates ``marker`` -- the stand-in for arbitrary code in a hostile model file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "payload_ran"
    folder = save_tiny(tmp_path / "models", weights_format="pt")
    # the attacker controls the whole package, so the card's sha256 matches the hostile file
    _replace_weights(folder, "model.pt", lambda path: torch.save({"weight": _Payload(marker)}, path))

    with pytest.raises(ModelError, match="could run code.*do not use"):
        load_model_package(folder)
    assert not marker.exists()

    # the payload is live: an unsafe load would have run it
    torch.load(folder / "model.pt", weights_only=False)
    assert marker.exists()


def _replace_weights(folder: Path, name: str, write) -> None:
    write(folder / name)
    card = json.loads((folder / CARD_FILE).read_text())
    card["sha256"] = sha256_file(folder / name)
    (folder / CARD_FILE).write_text(json.dumps(card))


def test_network_outside_allowed_packages_is_refused():
    with pytest.raises(ModelError, match="outside spinebrain and monai"):
        build_network(make_card(network={"architecture": "os.system", "kwargs": {}}))
    with pytest.raises(ModelError, match="not available in this version"):
        build_network(make_card(network={"architecture": "NoSuchNet", "kwargs": {}}))


def test_weights_that_do_not_fit_the_network(tmp_path):
    folder = save_model_package(tmp_path, tiny_network().state_dict(), make_card())
    card = json.loads((folder / CARD_FILE).read_text())
    card["network"]["kwargs"]["features"] = [8, 8, 8, 8, 16, 8]
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="do not fit the network"):
        load_network(folder)


# -- atomic writing ---------------------------------------------------------------------------------
def test_failed_save_leaves_nothing_and_keeps_the_previous_package(tmp_path, monkeypatch):
    first = save_tiny(tmp_path)
    previous_card = (first / CARD_FILE).read_text()
    with pytest.raises(ModelError, match="already exists"):
        save_tiny(tmp_path)

    def cancelled(path):
        raise CancelledError("stopped")

    monkeypatch.setattr(package_module, "sha256_file", cancelled)
    with pytest.raises(CancelledError):
        save_model_package(tmp_path, {"w": torch.zeros(3)}, make_card(), overwrite=True)
    with pytest.raises(CancelledError):
        save_model_package(tmp_path, {"w": torch.zeros(3)}, make_card("other-model"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-seg"]
    assert (first / CARD_FILE).read_text() == previous_card
    monkeypatch.undo()
    load_model_package(first)  # still intact

    save_model_package(tmp_path, {"w": torch.zeros(3)}, make_card(), overwrite=True)
    assert torch.equal(load_model_package(first)[1]["w"], torch.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-seg"]


def test_save_refuses_non_tensor_entries(tmp_path):
    with pytest.raises(ModelError, match="not named tensors"):
        save_model_package(tmp_path, {"w": torch.ones(1), "epoch": 3}, make_card())
    assert list(tmp_path.iterdir()) == []


# -- registry ---------------------------------------------------------------------------------------
@pytest.fixture
def folders(tmp_path, monkeypatch):
    user, bundled = tmp_path / "user", tmp_path / "bundled"
    monkeypatch.setenv("SPINEBRAIN_MODELS_DIR", str(user))
    monkeypatch.setenv("SPINEBRAIN_BUNDLED_MODELS_DIR", str(bundled))
    return user, bundled


def test_user_model_overrides_bundled_one_with_same_id(folders):
    user, bundled = folders
    save_tiny(bundled, "spine-default", version="1.0")
    save_tiny(bundled, "bundled-only", task="brain-tissue")
    save_tiny(user, "spine-default", version="2.0")

    registry = ModelRegistry()
    assert (registry.user_dir, registry.bundled_dir) == (user, bundled)
    entries = {e.card.id: e for e in registry.list_models()}
    assert set(entries) == {"spine-default", "bundled-only"}
    assert entries["spine-default"].source == "user" and entries["spine-default"].overrides_bundled
    assert entries["spine-default"].card.version == "2.0"
    assert entries["bundled-only"].source == "bundled"
    assert registry.find("spine-default").path == user / "spine-default"
    card, _ = load_model_package("spine-default")  # default registry from the environment
    assert card.version == "2.0"
    assert [e.card.id for e in registry.list_models(task="brain-tissue")] == ["bundled-only"]


def test_find_by_task_prefers_region_then_user_then_newest(folders):
    user, bundled = folders
    save_tiny(bundled, "any-region", task="spine-label")
    save_tiny(bundled, "lumbar-old", task="spine-label", region="lumbar", created="2024-01-01")
    save_tiny(bundled, "lumbar-new", task="spine-label", region="lumbar", created="2025-01-01")
    save_tiny(bundled, "cervical", task="spine-label", region="cervical")
    registry = ModelRegistry()

    assert registry.find(task="spine-label", region="lumbar").card.id == "lumbar-new"
    assert registry.find(task="spine-label", region="thoracic").card.id == "any-region"
    cervical = registry.list_models(task="spine-label", region="cervical")
    assert {e.card.id for e in cervical} == {"any-region", "cervical"}
    save_tiny(user, "my-lumbar", task="spine-label", region="lumbar", created="2020-01-01")
    assert registry.find(task="spine-label", region="lumbar").card.id == "my-lumbar"
    card, _ = load_model_package(task="spine-label", region="lumbar", registry=registry)
    assert card.id == "my-lumbar"


def test_broken_package_is_reported_not_fatal(folders):
    user, _ = folders
    save_tiny(user, "good")
    (user / "broken").mkdir()
    (user / "broken" / CARD_FILE).write_text("not json")
    (user / ".good-staging").mkdir()  # an unfinished save: ignored silently
    registry = ModelRegistry()
    assert [e.card.id for e in registry.list_models()] == ["good"]
    assert [(path.name, "not valid JSON" in message) for path, message in registry.problems] == [("broken", True)]


def test_install_verifies_and_copies(folders, tmp_path):
    user, _ = folders
    source = save_tiny(tmp_path / "downloads", "imported", task="brain-lesion")
    registry = ModelRegistry()
    entry = registry.install(source)
    assert entry.path == user / "imported" and entry.source == "user"
    assert registry.find(task="brain-lesion").card.id == "imported"
    with pytest.raises(ModelError, match="already installed"):
        registry.install(source)

    weights = source / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ModelError, match="tampered or corrupted"):
        registry.install(source, overwrite=True)
    load_model_package(user / "imported")  # the installed copy is untouched
    assert sorted(p.name for p in user.iterdir()) == ["imported"]


def test_default_folders(monkeypatch, tmp_path):
    monkeypatch.delenv("SPINEBRAIN_MODELS_DIR", raising=False)
    monkeypatch.delenv("SPINEBRAIN_BUNDLED_MODELS_DIR", raising=False)
    assert default_bundled_dir() == Path(__file__).resolve().parents[1] / "Resources" / "Models"
    assert default_bundled_dir().is_dir()

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert default_user_dir() == tmp_path / ".local" / "share" / "SlicerSpineBrain" / "models"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_user_dir() == tmp_path / "Library" / "Application Support" / "SlicerSpineBrain" / "models"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    assert default_user_dir() == tmp_path / "Roaming" / "SlicerSpineBrain" / "models"
    monkeypatch.setenv("SPINEBRAIN_MODELS_DIR", str(tmp_path / "mine"))
    assert default_user_dir() == tmp_path / "mine"
