"""ImageNet weights: the offline message, old torchvision DenseNet files, strict loading."""
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision

from farnet_lite.backbones import build_backbone, imagenet_weights_file


@pytest.fixture(scope="module")
def densenet_state():
    """A random torchvision DenseNet-121 state dict (the stand-in for the real ImageNet file)."""
    torch.manual_seed(1)
    return torchvision.models.densenet121(weights=None).state_dict()


def _old_style(state: dict) -> dict:
    """The key names of torchvision's original DenseNet release: ``denselayerN.norm.1.weight`` and friends."""
    renamed = {}
    for key, value in state.items():
        for part in ("norm", "relu", "conv"):
            for index in ("1", "2"):
                key = key.replace(f".{part}{index}.", f".{part}.{index}.")
        renamed[key] = value
    return renamed


def test_offline_message_is_one_sentence_naming_file_cache_and_both_ways_on(monkeypatch, tmp_path):
    def offline(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(RuntimeError) as caught:
        build_backbone("densenet121", pretrained=True)
    message = str(caught.value)
    cache = str(tmp_path / "hub" / "checkpoints")
    assert "densenet121-a639ec97.pth" in message and cache in message
    assert "--pretrained PATH" in message and "--pretrained false" in message
    assert message.count(". ") == 0 and not message.endswith(".")      # one sentence, no full stop inside
    assert imagenet_weights_file("densenet121") == tmp_path / "hub" / "checkpoints" / "densenet121-a639ec97.pth"


def test_old_densenet_key_names_load_and_every_tensor_arrives(densenet_state, tmp_path):
    old = _old_style(densenet_state)
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    assert "features.denseblock1.denselayer1.conv.2.weight" in old
    assert "features.denseblock1.denselayer1.norm1.weight" not in old
    path = tmp_path / "densenet121-old.pth"
    torch.save(old, path)
    backbone = build_backbone("densenet121", pretrained=path)
    ours = {k: v for k, v in backbone.state_dict().items() if not k.startswith("stem0.")}
    assert len(ours) == len(densenet_state) - 2                        # all but classifier.weight / .bias
    assert all(torch.equal(value, densenet_state[key]) for key, value in ours.items())


def test_pretrained_true_loads_the_old_hub_file_strictly(densenet_state, monkeypatch):
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: _old_style(densenet_state))
    backbone = build_backbone("densenet121", pretrained=True)
    assert torch.equal(backbone.features.denseblock4.denselayer16.conv2.weight,
                       densenet_state["features.denseblock4.denselayer16.conv2.weight"])


@pytest.mark.parametrize("change", ["drop", "extra"])
def test_strict_loading_never_drops_weights_silently(densenet_state, tmp_path, change, monkeypatch):
    state = dict(densenet_state)
    if change == "drop":
        del state["features.denseblock2.denselayer3.norm1.weight"]
    else:
        state["features.denseblock2.denselayer3.gate.weight"] = torch.ones(3)
    path = tmp_path / f"{change}.pth"
    torch.save(state, path)
    counts = r"1 missing, 0 unexpected" if change == "drop" else r"0 missing, 1 unexpected"
    with pytest.raises(ValueError, match=rf"^{path} is not a state dict of torchvision's densenet121: {counts}"):
        build_backbone("densenet121", pretrained=path)
    # the downloaded (pretrained=True) file goes through the same check, naming the cache file
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: state)
    with pytest.raises(ValueError, match=rf"densenet121-a639ec97\.pth is not a state dict .*{counts}"):
        build_backbone("densenet121", pretrained=True)
    assert Path(path).is_file()
