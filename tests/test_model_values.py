"""Value tests of the model's wiring: the Fig. 3 fusion order and FR's use of the MSFA heatmaps (§3.1).

Shapes cannot catch these bugs: swapping the two concatenated tensors of a fusion block keeps every shape when
the widths agree, and feeding FR zeros instead of the MSFA heatmaps keeps FR's input width. So the blocks get
hand-set weights here and the outputs are checked on values (tools/mutations.py shows both mutations fail).
"""
import math

import torch
from torch import nn

from farnet_lite.layers import DownBlock, UpBlock, upsample_like
from farnet_lite.model import FR, FARNet, FARNetConfig

BN_SCALE = 1 / math.sqrt(1 + 1e-5)   # a fresh BatchNorm2d in eval(): running mean 0, var 1, eps 1e-5


def set_conv(conv: nn.Conv2d, weight):
    """Hand-set a conv: ``weight`` (out, in, kh, kw), bias 0."""
    with torch.no_grad():
        conv.weight.copy_(torch.as_tensor(weight, dtype=conv.weight.dtype).reshape(conv.weight.shape))
        if conv.bias is not None:
            conv.bias.zero_()


def constant(value, channels, size):
    return torch.full((1, channels, *size), float(value))


def test_up_block_concatenates_running_map_then_skip():
    """UpBlock: conv(cat([up(x), skip])); the 1x1 fusion conv weighs x by 1 and the skip by 10."""
    block = UpBlock(x_ch=1, skip_ch=1, out_ch=1).eval()
    set_conv(block.conv[0], [1.0, 10.0])
    x, skip = constant(2.0, 1, (2, 2)), constant(3.0, 1, (4, 4))        # (B, 1, h', w'), (B, 1, h, w)
    out = block(x, skip)
    assert out.shape == (1, 1, 4, 4)
    torch.testing.assert_close(out, constant((2.0 + 10 * 3.0) * BN_SCALE, 1, (4, 4)))  # swapped: 3 + 10 * 2


def test_down_block_concatenates_strided_map_then_skip():
    """DownBlock: conv(cat([down(x), skip])); down copies x (centre tap 1) into its 2 channels."""
    block = DownBlock(x_ch=1, skip_ch=1, out_ch=1).eval()
    centre = torch.zeros(2, 1, 3, 3)
    centre[:, :, 1, 1] = 1.0
    set_conv(block.down[0], centre)
    set_conv(block.conv[0], [1.0, 0.0, 10.0])                            # d0 by 1, d1 by 0, skip by 10
    x, skip = constant(2.0, 1, (8, 8)), constant(3.0, 1, (4, 4))
    out = block(x, skip)
    down = 2.0 * BN_SCALE                                                 # each strided channel
    assert out.shape == (1, 1, 4, 4)
    torch.testing.assert_close(out, constant((down + 10 * 3.0) * BN_SCALE, 1, (4, 4)))  # swapped: 3 + 10 * down


def test_fr_output_is_the_upsampled_msfa_heatmaps_when_wired_to_them():
    """FR's input is cat([up(features), c0, up(heatmaps)]); a head that passes through the last K channels must
    return exactly the up-sampled MSFA heatmaps -- zeros fed instead would return zeros."""
    k, feature_ch, c0_ch = 2, 3, 1
    fr = FR(feature_ch, c0_ch, k, use_heatmaps=True).eval()
    width = feature_ch + c0_ch + k
    identity = torch.zeros(width, width, 3, 3)
    identity[range(width), range(width), 1, 1] = 1.0
    set_conv(fr.head[0], identity)
    pick = torch.zeros(k, width)
    pick[range(k), range(feature_ch + c0_ch, width)] = 1.0                # the heatmap channels
    set_conv(fr.head[1], pick)
    gen = torch.Generator().manual_seed(0)
    features, c0 = torch.rand(1, feature_ch, 4, 6, generator=gen), torch.rand(1, c0_ch, 8, 12, generator=gen)
    heatmaps = torch.rand(1, k, 4, 6, generator=gen)                       # (B, K, H/2, W/2)
    out = fr(features, c0, heatmaps)                                        # (B, K, H, W)
    torch.testing.assert_close(out, upsample_like(heatmaps, c0))
    assert out.abs().sum() > 1.0


def test_farnet_final_depends_on_the_msfa_heatmaps():
    """Perturb the MSFA head's output inside a whole FARNet (MSFA + FR): the final heatmaps must move."""
    torch.manual_seed(0)
    model = FARNet(FARNetConfig(num_landmarks=3, refine="fr")).eval()
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model(images).final                                       # (1, 3, 64, 64)
        handle = model.msfa_head.register_forward_hook(lambda module, args, output: output + 1.0)
        after = model(images).final
        handle.remove()
    assert (after - before).abs().max() > 1e-3
