"""FARNet, its Table 2 variants and baselines: shapes, structure, gradients, official widths (notebooks 03-05)."""
import pytest
import torch
from torch import nn

from farnet_lite.backbones import BACKBONES, build_backbone
from farnet_lite.baselines import FPN, UNet
from farnet_lite.layers import HeatmapOutput, count_parameters
from farnet_lite.model import FARNet, FARNetConfig
from farnet_lite.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize_images
from farnet_lite.systems import SYSTEMS, build_model

VARIANTS = [("add", None), ("concat", None), ("concat", "fr_naive"), ("concat", "fr")]  # MSFA(+), MSFA, +FR*, +FR


@pytest.fixture(scope="module")
def backbones():
    """Each backbone built once; the variants below share it (FARNet accepts a built Backbone)."""
    return {name: build_backbone(name).eval() for name in BACKBONES}


@pytest.mark.parametrize("name", BACKBONES)
def test_output_shapes_for_every_backbone_and_variant(backbones, name):
    images = torch.randn(1, 3, 32, 64)
    for fusion, refine in VARIANTS:
        model = FARNet(FARNetConfig(5, name, fusion, refine), backbones[name]).eval()
        assert model.config == FARNetConfig(5, name, fusion, refine)
        with torch.no_grad():
            out = model(images)
        assert isinstance(out, HeatmapOutput)
        if refine is None:  # MSFA alone: half-resolution heatmaps are the prediction
            assert out.final.shape == (1, 5, 16, 32) and out.coarse is None
        elif refine == "fr_naive":
            assert out.final.shape == (1, 5, 32, 64) and out.coarse is None
        else:
            assert out.final.shape == (1, 5, 32, 64) and out.coarse.shape == (1, 5, 16, 32)


@pytest.mark.parametrize("k", [1, 19, 37, 68])
def test_any_number_of_landmarks(k):
    model = FARNet(FARNetConfig(k)).eval()
    with torch.no_grad():
        final, coarse = model(torch.randn(2, 3, 64, 64))
    assert final.shape == (2, k, 64, 64) and coarse.shape == (2, k, 32, 32)
    assert model.fr.head[0].in_channels == 64 + 32 + k  # FR concat: features + C0 + heatmaps


def test_fr_fr_naive_and_msfa_alone_structure():
    fr, naive, alone = (FARNet(FARNetConfig(19, refine=refine)) for refine in ("fr", "fr_naive", None))
    assert fr.msfa_head is not None and fr.fr.use_heatmaps and fr.fr.head[0].in_channels == 115
    assert naive.msfa_head is None and not naive.fr.use_heatmaps and naive.fr.head[0].in_channels == 96
    assert alone.fr is None and alone.backbone.stem0 is None and alone.backbone.channels[0] == 0
    # FR* and FR differ exactly by the K input channels of the FR 3x3 conv and the MSFA head
    msfa_head = count_parameters(fr.msfa_head)
    assert msfa_head == 64 * 64 * 9 + 64 + 64 * 19 + 19
    fr_head = 115 * 115 * 9 + 115 + 115 * 19 + 19  # 3x3 conv 115 -> 115, 1x1 conv 115 -> 19
    naive_head = 96 * 96 * 9 + 96 + 96 * 19 + 19  # 3x3 conv 96 -> 96, 1x1 conv 96 -> 19
    assert count_parameters(fr) - count_parameters(naive) == msfa_head + fr_head - naive_head
    c0_stem = 3 * 32 * 9 + 32 + 2 * 32  # 3x3 conv 3 -> 32 and its BN
    assert count_parameters(naive) - count_parameters(alone) == c0_stem + naive_head - msfa_head


def test_bad_input_size_and_channels():
    model = FARNet(FARNetConfig(3, refine=None)).eval()
    with pytest.raises(ValueError, match=r"^input size 100×90 is not a multiple of 32; resize or pad to 128×96$"):
        model(torch.zeros(1, 3, 100, 90))
    with pytest.raises(ValueError, match=r"input size 64×40 is not a multiple of 32"):
        UNet(3)(torch.zeros(1, 3, 64, 40))
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\), got \(1, 1, 64, 64\)"):
        model(torch.zeros(1, 1, 64, 64))


def test_bad_arguments():
    with pytest.raises(ValueError, match="fusion must be 'concat' or 'add'"):
        FARNetConfig(19, fusion="sum")
    with pytest.raises(ValueError, match="refine must be 'fr', 'fr_naive' or None"):
        FARNetConfig(19, refine="FR")
    with pytest.raises(ValueError, match="num_landmarks must be a positive integer"):
        FARNetConfig(0)
    with pytest.raises(ValueError, match="needs the backbone's L0"):
        FARNet(FARNetConfig(19), build_backbone("densenet121", level0=False))
    with pytest.raises(ValueError, match="make them agree"):
        FARNet(FARNetConfig(19), build_backbone("densenet169"))
    with pytest.raises(TypeError, match="takes a FARNetConfig"):
        FARNet(19)
    with pytest.raises(ValueError, match="Unknown system 'farnet'; choose one of unet, fpn"):
        build_model("farnet", 19)


def test_build_model_maps_table2_names():
    assert SYSTEMS == ("unet", "fpn", "msfa_add", "msfa", "msfa_fr_naive", "msfa_fr")
    expected = {"msfa_add": ("add", None), "msfa": ("concat", None), "msfa_fr_naive": ("concat", "fr_naive"),
                "msfa_fr": ("concat", "fr")}
    for system, (fusion, refine) in expected.items():
        assert build_model(system, 7).config == FARNetConfig(7, "densenet121", fusion, refine)
    assert build_model("fpn", 7, backbone="densenet169").backbone.name == "densenet169"


@pytest.mark.parametrize("system", SYSTEMS)
def test_gradient_reaches_every_parameter(system):
    """One backward at 64x64: no parameter is unused (DDP-safe) and every one gets a non-zero gradient."""
    torch.manual_seed(0)
    model = build_model(system, 4).train()
    out = model(torch.randn(2, 3, 64, 64))
    loss = out.final.square().mean() + (out.coarse.square().mean() if out.coarse is not None else 0)
    loss.backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_baselines_output_full_resolution_heatmaps():
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for model in (UNet(6).eval(), FPN(6).eval()):
            out = model(images)
            assert out.final.shape == (1, 6, 64, 96) and out.coarse is None
    assert count_parameters(UNet(19)) == 31_044_691  # widths 64-1024, as documented in baselines.py


# The conv layers of the official FARNet model.py (K = 19) in the order its forward() calls them:
# (in, out, kernel, stride). Our C0 is 3x3 where the official is 1x1 (the paper says 3x3); the official
# file's two never-called layers (conv_33_refine2 64->64, conv_33_last2 115->115) are left out.
OFFICIAL_DENSENET121_CONVS = [
    (3, 32, 3, 1),  # C0 (w1_conv11_0, official kernel 1)
    (1024, 512, 3, 1), (512, 256, 1, 1),  # L5 start of up path 1
    (1280, 256, 1, 1), (768, 256, 1, 1), (512, 256, 1, 1),  # up path 1 at L4, L3, L2
    (256, 512, 3, 2), (768, 512, 1, 1),  # down path to L3
    (512, 1024, 3, 2), (1280, 1024, 1, 1),  # down path to L4
    (1024, 2048, 3, 2), (2304, 1024, 3, 1),  # down path to L5 (the official 3x3 fusion)
    (1024, 256, 1, 1), (1280, 256, 1, 1), (768, 256, 1, 1), (512, 128, 1, 1), (192, 64, 1, 1),  # up path 2
    (64, 64, 3, 1), (64, 19, 1, 1),  # MSFA head
    (115, 115, 3, 1), (115, 19, 1, 1),  # FR head: 64 + 32 + 19 = 115 channels
]
WITH_BATCH_NORM = 17  # every conv above but the four head convs is followed by BN


def test_densenet121_conv_widths_match_official():
    model = FARNet(FARNetConfig(19, l5_kernel=3)).eval()                   # the official 3x3 at L5
    calls = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and (not name.startswith("backbone.") or name.startswith("backbone.stem0")):
            module.register_forward_hook(lambda m, i, o: calls.append(
                (m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0])))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert calls == OFFICIAL_DENSENET121_CONVS
    # hence the parameter count: DenseNet-121 features + these convs (weights and biases) + their BNs
    densenet_features = 7_978_856 - (1024 * 1000 + 1000)
    convs = sum(i * o * k * k + o for i, o, k, _ in OFFICIAL_DENSENET121_CONVS)
    bns = sum(2 * o for _, o, _, _ in OFFICIAL_DENSENET121_CONVS[:WITH_BATCH_NORM])
    assert count_parameters(model) == densenet_features + convs + bns == 61_219_731
    # the paper's 1x1 at L5 (the default) has 8 x 2304 x 1024 weights fewer: 42.3 M in all
    paper = FARNet(FARNetConfig(19))
    assert count_parameters(model) - count_parameters(paper) == 8 * 2304 * 1024 == 18_874_368
    assert paper.msfa.down[2].conv[0].kernel_size == (1, 1) and model.msfa.down[2].conv[0].kernel_size == (3, 3)
    print(f"\nFARNet-DenseNet121 (K=19): {count_parameters(model):,d} parameters; the official model.py has "
          f"{count_parameters(model) - 768 + (64 * 64 * 9 + 64) + (115 * 115 * 9 + 115):,d} "
          "(1x1 C0 and its two unused 3x3 convs)")


def test_normalize_images_after_division_by_255():
    grey = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3)
    out = normalize_images(grey)
    assert out.shape == (1, 3, 1, 3) and out.dtype == torch.float32
    for c in range(3):
        expected = torch.tensor([0.0, 0.2, 1.0]).sub(IMAGENET_MEAN[c]).div(IMAGENET_STD[c])
        torch.testing.assert_close(out[0, c, 0], expected)
    torch.testing.assert_close(normalize_images(grey.float() / 255), out)  # float in [0, 1] == uint8
    rgb = torch.rand(2, 3, 4, 5)
    torch.testing.assert_close(normalize_images(rgb)[:, 1], (rgb[:, 1] - 0.456) / 0.224)
    # the official code's scaling: 0-255 values with the [0, 1] statistics
    torch.testing.assert_close(normalize_images(grey, official_scaling=True)[0, 0, 0],
                               (torch.tensor([0.0, 51.0, 255.0]) - 0.485) / 0.229)


def test_normalize_images_rejects_bad_inputs():
    with pytest.raises(ValueError, match="float images must be in \\[0, 1\\] but reach 255.0"):
        normalize_images(torch.full((1, 1, 2, 2), 255.0))
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, H, W\) or \(B, 3, H, W\)"):
        normalize_images(torch.zeros(4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8 or floating point"):
        normalize_images(torch.zeros(1, 1, 2, 2, dtype=torch.int64))
