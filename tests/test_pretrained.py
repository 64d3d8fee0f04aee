"""Pretrained encoders without a network (podium.models.encoders): a local .pth / .safetensors
file, timm's local caches for `pretrained: true`, the first conv adapted by timm's own rule,
and one-line errors — never a download."""

import socket

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models import adapt_input_conv

from podium.errors import PodiumError
from podium.models import create_encoder, create_model

NETWORK = "a network call was tried"


@pytest.fixture
def no_network(monkeypatch):
    """Every way timm / huggingface_hub / torch reach the network raises."""
    import huggingface_hub
    import timm.models._builder
    import timm.models._hub

    def refuse(*args, **kwargs):
        raise AssertionError(NETWORK)

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", refuse)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_hf", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Empty HF hub and torch hub caches under tmp_path: (hf cache, torch home)."""
    from huggingface_hub import constants

    hf, home = tmp_path / "hf" / "hub", tmp_path / "torch"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf))
    monkeypatch.setenv("TORCH_HOME", str(home))
    return hf, home


def _timm_state_dict(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False).state_dict()


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory):
    """A seeded random resnet18 state dict (classifier included), saved as .pth and .safetensors."""
    folder = tmp_path_factory.mktemp("weights")
    weights = _timm_state_dict("resnet18")
    torch.save(weights, folder / "resnet18.pth")
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "resnet18.safetensors"))
    return weights, folder


def _expected(weights, key, in_channels):
    return weights[key] if in_channels == 3 else adapt_input_conv(in_channels, weights[key])


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("in_channels", [3, 1, 4])
def test_a_local_file_loads_with_timms_input_conv_rule(
    resnet18_weights, suffix, in_channels, no_network
):
    weights, folder = resnet18_weights
    encoder = create_encoder("resnet18", in_channels, folder / f"resnet18{suffix}")
    loaded = encoder.encoder.state_dict()  # toolbelt wraps timm's feature model
    assert loaded["conv1.weight"].shape[1] == in_channels
    torch.testing.assert_close(
        loaded["conv1.weight"], _expected(weights, "conv1.weight", in_channels), rtol=0, atol=0
    )
    assert set(loaded) == set(weights) - {"fc.weight", "fc.bias"}
    for key in loaded:
        if key != "conv1.weight":
            assert torch.equal(loaded[key], weights[key]), key


def test_every_model_kind_takes_the_file(resnet18_weights, no_network):
    weights, folder = resnet18_weights
    path = str(folder / "resnet18.safetensors")
    unet = create_model("unet", encoder="resnet18", in_channels=1, pretrained=path)
    assert torch.equal(
        unet.encoder.encoder.layer4[1].conv2.weight, weights["layer4.1.conv2.weight"]
    )
    centernet = create_model("centernet", encoder="resnet18", pretrained=path, head_channels=8)
    assert torch.equal(
        centernet.encoder.encoder.layer2[0].conv1.weight, weights["layer2.0.conv1.weight"]
    )
    boxes = create_model("boxes", encoder="resnet18", in_channels=4, pretrained=path)
    assert torch.equal(boxes.encoder.conv1.weight, adapt_input_conv(4, weights["conv1.weight"]))
    assert torch.equal(boxes.encoder.layer1[0].bn1.running_var, weights["layer1.0.bn1.running_var"])


def test_a_container_and_a_headless_file_load(tmp_path, no_network):
    """{"state_dict": ...} (timm / lightning), a Catalyst checkpoint, and a num_classes=0 model."""
    torch.manual_seed(1)
    headless = timm.create_model("efficientnet_b0", pretrained=False, num_classes=0).state_dict()
    torch.save({"model_state_dict": headless, "epoch": 3}, tmp_path / "catalyst.pth")
    torch.save({"state_dict": headless}, tmp_path / "timm.pth")
    for name in ("catalyst.pth", "timm.pth"):
        encoder = create_encoder("efficientnet_b0", 1, tmp_path / name)
        conv = encoder.encoder.conv_stem.weight
        assert torch.equal(conv, adapt_input_conv(1, headless["conv_stem.weight"]))
        assert torch.equal(
            encoder.encoder.blocks[6][0].conv_pwl.weight, headless["blocks.6.0.conv_pwl.weight"]
        )


def test_pretrained_true_reads_the_hf_cache(resnet18_weights, empty_caches, no_network):
    """timm's hub layout: models--timm--<id>/refs/main → snapshots/<commit>/model.safetensors."""
    weights, folder = resnet18_weights
    hf, _ = empty_caches
    hub_id = timm.models.get_pretrained_cfg("resnet18").hf_hub_id  # timm/resnet18.a1_in1k
    repo = hf / f"models--{hub_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    (repo / "snapshots" / "0123abc" / "model.safetensors").write_bytes(
        (folder / "resnet18.safetensors").read_bytes()
    )
    encoder = create_encoder("resnet18", 1, True)
    assert torch.equal(encoder.encoder.conv1.weight, adapt_input_conv(1, weights["conv1.weight"]))
    assert torch.equal(encoder.encoder.layer3[0].conv1.weight, weights["layer3.0.conv1.weight"])


def test_pretrained_true_reads_the_torch_hub_cache(resnet18_weights, empty_caches, no_network):
    weights, folder = resnet18_weights
    _, home = empty_caches
    url = timm.models.get_pretrained_cfg("resnet18").url
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / url.rsplit("/", 1)[-1]).write_bytes((folder / "resnet18.pth").read_bytes())
    encoder = create_encoder("resnet18", 3, True, features_only=False)
    assert torch.equal(encoder.conv1.weight, weights["conv1.weight"])


def test_nothing_cached_is_one_line_and_no_network_call(empty_caches, no_network):
    hf, home = empty_caches
    with pytest.raises(PodiumError) as info:
        create_model("unet", encoder="resnet18", pretrained=True)
    message = str(info.value)
    assert "\n" not in message and NETWORK not in message
    assert 'no pretrained weights for encoder "resnet18"' in message
    assert str(hf / "models--timm--resnet18.a1_in1k") in message
    assert str(home / "hub" / "checkpoints") in message
    assert "pretrained: false" in message


def test_a_file_of_another_encoder_is_one_line_naming_the_keys(tmp_path, no_network):
    torch.save(_timm_state_dict("efficientnet_b0"), tmp_path / "b0.pth")
    with pytest.raises(PodiumError) as info:
        create_encoder("resnet18", 3, tmp_path / "b0.pth")
    message = str(info.value)
    assert "\n" not in message
    assert f'pretrained weights {tmp_path / "b0.pth"} do not fit encoder "resnet18"' in message
    assert (
        "missing keys (e.g. conv1.weight" in message and "unexpected keys (e.g. blocks." in message
    )


def test_a_truncated_state_dict_is_refused_not_half_loaded(tmp_path):
    """efficientnet's feature model loads non-strictly in timm: podium's check catches a file
    that lacks layers instead of leaving them random."""
    weights = _timm_state_dict("efficientnet_b0")
    partial = {k: v for k, v in weights.items() if not k.startswith("blocks.6")}
    save_file(
        {k: v.contiguous() for k, v in partial.items()}, str(tmp_path / "partial.safetensors")
    )
    with pytest.raises(PodiumError, match=r"missing keys \(e\.g\. blocks\.6\.0"):
        create_encoder("efficientnet_b0", 3, tmp_path / "partial.safetensors")


@pytest.mark.parametrize(
    "pretrained, expected",
    [
        ("missing.pth", r"pretrained weights missing\.pth does not exist"),
        (3, r"model pretrained must be true, false or the path of a weights file"),
    ],
)
def test_bad_pretrained_values(pretrained, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PodiumError, match=expected):
        create_encoder("resnet18", 3, pretrained)


def test_unreadable_files_are_one_line(tmp_path):
    (tmp_path / "notes.pth").write_text("not weights")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(PodiumError, match="is not a torch file"):
        create_encoder("resnet18", 3, tmp_path / "notes.pth")
    with pytest.raises(PodiumError, match="cannot be read as safetensors"):
        create_encoder("resnet18", 3, tmp_path / "bad.safetensors")
