"""Backbones: levels L0-L5, their channel counts, and the three ways of getting weights (notebook 03)."""
from urllib.error import URLError

import pytest
import torch
import torchvision

from farnet_lite.backbones import BACKBONES, STRIDES, build_backbone, check_input_size

# Hand-written from the torchvision architectures (see the table in farnet_lite/backbones.py).
EXPECTED_CHANNELS = {
    "vgg16": (64, 128, 256, 512, 512, 512),
    "vgg19": (64, 128, 256, 512, 512, 512),
    "resnet101": (32, 64, 256, 512, 1024, 2048),
    "resnet152": (32, 64, 256, 512, 1024, 2048),
    "densenet121": (32, 64, 256, 512, 1024, 1024),
    "densenet169": (32, 64, 256, 512, 1280, 1664),
}


@pytest.fixture(scope="module")
def backbones():
    """Each backbone built once for the module (resnet152 / vgg take about a second each)."""
    return {name: build_backbone(name).eval() for name in BACKBONES}


@pytest.mark.parametrize("name", BACKBONES)
def test_levels_have_the_documented_channels_and_strides(backbones, name):
    backbone = backbones[name]
    assert backbone.name == name
    assert backbone.channels == EXPECTED_CHANNELS[name]
    assert backbone.strides == STRIDES == (1, 2, 4, 8, 16, 32)
    with torch.no_grad():
        levels = backbone(torch.randn(1, 3, 64, 96))
    assert len(levels) == 6
    for level, channels, stride in zip(levels, backbone.channels, STRIDES):
        assert level.shape == (1, channels, 64 // stride, 96 // stride)


def test_level1_is_the_stem_convolution_before_batch_norm(backbones):
    """Official choice: the L1 skip of DenseNet is conv0's raw output (can be negative, unlike after ReLU)."""
    backbone = backbones["densenet121"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        l1 = backbone(x)[1]
        torch.testing.assert_close(l1, backbone.features.conv0(x))
    assert l1.min() < 0


def test_level0_false_drops_the_c0_stem_but_not_vgg_block1():
    densenet = build_backbone("densenet121", level0=False)
    assert densenet.channels == (0, 64, 256, 512, 1024, 1024)
    assert densenet.stem0 is None
    assert not any(name.startswith("stem0") for name, _ in densenet.named_parameters())
    with torch.no_grad():
        levels = densenet.eval()(torch.randn(1, 3, 64, 64))
    assert levels[0] is None and levels[5].shape == (1, 1024, 2, 2)


def test_bad_input_size_is_one_clear_sentence():
    with pytest.raises(ValueError, match=r"^input size 100×90 is not a multiple of 32; resize or pad to 128×96$"):
        check_input_size(torch.zeros(1, 3, 100, 90))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        check_input_size(torch.zeros(1, 1, 64, 64))
    check_input_size(torch.zeros(2, 3, 64, 96))  # fine


def test_unknown_backbone_and_bad_pretrained_value():
    with pytest.raises(ValueError, match="unknown backbone 'resnet50'"):
        build_backbone("resnet50")
    with pytest.raises(TypeError, match="pretrained must be False, True or a path"):
        build_backbone("densenet121", pretrained=1)


@pytest.fixture(scope="module")
def saved_densenet(tmp_path_factory):
    """A randomly initialised torchvision DenseNet-121 and the path of its saved state dict."""
    torch.manual_seed(0)
    reference = torchvision.models.densenet121(weights=None)
    path = tmp_path_factory.mktemp("weights") / "d121.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


def _assert_same_weights(backbone, reference):
    """Every tensor of the backbone's torchvision part equals the reference torchvision model's."""
    theirs = reference.state_dict()
    ours = {key: value for key, value in backbone.state_dict().items() if not key.startswith("stem0.")}
    assert len(ours) == 725  # the 727 tensors of DenseNet-121 less the classifier (C0 stem skipped: it is new)
    assert all(torch.equal(value, theirs[key]) for key, value in ours.items())


def test_local_state_dict_is_loaded(saved_densenet):
    reference, path = saved_densenet
    _assert_same_weights(build_backbone("densenet121", pretrained=path), reference)
    fresh = build_backbone("densenet121")  # and the random init really differs from the file
    assert not torch.equal(fresh.features.conv0.weight, reference.features.conv0.weight)


def test_legacy_densenet_keys_of_the_hub_cache_file_are_renamed(saved_densenet, tmp_path):
    """torchvision's densenet121-a639ec97.pth names 'denselayer1.norm1.weight' 'denselayer1.norm.1.weight'."""
    reference, _ = saved_densenet
    legacy = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
              for k, v in reference.state_dict().items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    torch.save(legacy, tmp_path / "legacy.pth")
    _assert_same_weights(build_backbone("densenet121", pretrained=str(tmp_path / "legacy.pth")), reference)


def test_mismatched_missing_and_corrupt_files_give_clear_errors(saved_densenet, tmp_path):
    _, densenet_file = saved_densenet
    with pytest.raises(ValueError, match=rf"^{densenet_file} is not a state dict of torchvision's resnet101: "
                                         r"\d+ missing, \d+ unexpected"):
        build_backbone("resnet101", pretrained=densenet_file)

    reference = torch.load(densenet_file, weights_only=True)
    reference["features.conv0.weight"] = torch.zeros(64, 1, 7, 7)  # a grey-input variant: wrong shape
    reshaped = tmp_path / "grey.pth"
    torch.save(reference, reshaped)
    with pytest.raises(ValueError, match=r"0 missing, 0 unexpected and 1 mis-shaped keys .*features.conv0.weight"):
        build_backbone("densenet121", pretrained=reshaped)

    with pytest.raises(FileNotFoundError, match=r"nope\.pth does not exist"):
        build_backbone("densenet121", pretrained=tmp_path / "nope.pth")

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=rf"could not read {corrupt} as a PyTorch state dict"):
        build_backbone("densenet121", pretrained=corrupt)


def test_pretrained_true_without_network_is_one_clear_error(monkeypatch):
    def offline(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"^the ImageNet weights densenet121-a639ec97\.pth of densenet121 are "
                                           r"not in torchvision's cache .* --pretrained PATH .* --pretrained false$"):
        build_backbone("densenet121", pretrained=True)


def test_pretrained_true_loads_the_imagenet1k_v1_file(monkeypatch):
    """The True path, with the download replaced by a random state dict in the hub file's legacy key style."""
    reference = torchvision.models.densenet121(weights=None)
    legacy = {k.replace(".norm2.", ".norm.2."): v for k, v in reference.state_dict().items()}
    urls = []

    def fake_download(url, *args, **kwargs):
        urls.append(url)
        return legacy

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    _assert_same_weights(build_backbone("densenet121", pretrained=True), reference)
    assert urls == [torchvision.models.DenseNet121_Weights.IMAGENET1K_V1.url]
