# Solutions of notebook 04_msfa_module (tools/exercises.py writes the student cells from this file).
# Each "# %% [exercise] ID" block is the full solved source of one exercise cell; the parts between
# "### BEGIN SOLUTION" and "### END SOLUTION" are what the student writes.

# %% [exercise] up-block
class UpBlock(nn.Module):
    """Fig. 3(a): up-sample the running map x to the skip's size and fuse the two -> (B, out_ch, h, w).

    fusion="concat" (MSFA): self.conv = phi_1 from x_ch + skip_ch to out_ch channels, applied to [up(x), skip] in
    that order; self.lateral = None.
    fusion="add" (MSFA(+), section 3.1.1): self.lateral = phi_1 from skip_ch to x_ch (it brings the skip to x's
    width so that the two can be summed) and self.conv = phi_3 from x_ch to out_ch, applied to up(x) + lateral(skip).
    """

    def __init__(self, x_ch, skip_ch, out_ch, fusion="concat"):
        super().__init__()
        ### BEGIN SOLUTION: self.lateral (None for "concat") and self.conv, each made by conv_bn_relu
        self.lateral = conv_bn_relu(skip_ch, x_ch, 1) if fusion == "add" else None
        self.conv = conv_bn_relu(x_ch + skip_ch, out_ch, 1) if fusion == "concat" else conv_bn_relu(x_ch, out_ch, 3)
        ### END SOLUTION

    def forward(self, x, skip):                     # x (B, x_ch, h', w'), skip (B, skip_ch, h, w)
        ### BEGIN SOLUTION: F.interpolate x to skip.shape[-2:] (bilinear, align_corners=False), then fuse
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)   # (B, x_ch, h, w)
        if self.lateral is None:
            return self.conv(torch.cat([x, skip], dim=1))     # (B, x_ch + skip_ch, h, w) -> (B, out_ch, h, w)
        return self.conv(x + self.lateral(skip))              # (B, x_ch, h, w) -> (B, out_ch, h, w)
        ### END SOLUTION


# %% [exercise] down-block
class DownBlock(nn.Module):
    """Fig. 3(b): a 3x3 stride-2 phi halves x's size and doubles its width, then fuses it with the skip.

    self.down = phi_3 with stride 2, from x_ch to 2 * x_ch channels. Then the fusion of UpBlock on (down(x), skip):
    fusion="concat": self.conv = phi_k (k = kernel_size) from 2 * x_ch + skip_ch to out_ch, self.lateral = None;
    fusion="add": self.lateral = phi_1 from skip_ch to 2 * x_ch and self.conv = phi_3 from 2 * x_ch to out_ch
    (always 3x3 after a sum, section 3.1.1).
    """

    def __init__(self, x_ch, skip_ch, out_ch, fusion="concat", kernel_size=1):
        super().__init__()
        ### BEGIN SOLUTION: self.down, self.lateral (None for "concat") and self.conv, each made by conv_bn_relu
        self.down = conv_bn_relu(x_ch, 2 * x_ch, 3, stride=2)
        self.lateral = conv_bn_relu(skip_ch, 2 * x_ch, 1) if fusion == "add" else None
        self.conv = (conv_bn_relu(2 * x_ch + skip_ch, out_ch, kernel_size) if fusion == "concat"
                     else conv_bn_relu(2 * x_ch, out_ch, 3))
        ### END SOLUTION

    def forward(self, x, skip):                     # x (B, x_ch, 2h, 2w), skip (B, skip_ch, h, w)
        ### BEGIN SOLUTION: x = self.down(x), then fuse exactly as UpBlock does
        x = self.down(x)                                       # (B, 2 x_ch, h, w)
        if self.lateral is None:
            return self.conv(torch.cat([x, skip], dim=1))     # (B, 2 x_ch + skip_ch, h, w) -> (B, out_ch, h, w)
        return self.conv(x + self.lateral(skip))              # (B, 2 x_ch, h, w) -> (B, out_ch, h, w)
        ### END SOLUTION


# %% [exercise] msfa
class MSFA(nn.Module):
    """MSFA (section 1) on the backbone widths channels = (C0, ..., C5): levels -> A1 (B, l1_width, H/2, W/2).

    The attributes are the package's, in the order of section 1:
      self.top   nn.Sequential(phi_3 C5 -> C5 // 2, phi_1 C5 // 2 -> width)                    U5
      self.up1   nn.ModuleList of 3 UpBlocks, skips L4, L3, L2, all width wide                  U4, U3, U2
      self.down  nn.ModuleList of 3 DownBlocks, skips U3, U4, U5, widths C3, C4, C5;           D3, D4, D5
                 every fusion 1x1 (section 3.1; the official code: 3x3 at L5)
      self.top2  phi_1 C5 -> width                                                             A5
      self.up2   nn.ModuleList of 4 UpBlocks, skips D4, D3, D2, L1;                             A4, A3, A2, A1
                 widths width, width, l2_width, l1_width
    """

    def __init__(self, channels, fusion="concat", width=256, l2_width=128, l1_width=64):
        super().__init__()
        c1, c2, c3, c4, c5 = channels[1:]
        ### BEGIN SOLUTION: self.top, self.up1, self.down, self.top2, self.up2 (the table above; pass fusion on)
        self.top = nn.Sequential(conv_bn_relu(c5, c5 // 2, 3), conv_bn_relu(c5 // 2, width, 1))           # U5
        self.up1 = nn.ModuleList([UpBlock(width, c, width, fusion) for c in (c4, c3, c2)])               # U4..U2
        self.down = nn.ModuleList([DownBlock(width, width, c3, fusion), DownBlock(c3, width, c4, fusion),
                                   DownBlock(c4, width, c5, fusion)])                      # D3..D5
        self.top2 = conv_bn_relu(c5, width, 1)                                                            # A5
        self.up2 = nn.ModuleList([UpBlock(width, c4, width, fusion), UpBlock(width, c3, width, fusion),
                                  UpBlock(width, width, l2_width, fusion),
                                  UpBlock(l2_width, c1, l1_width, fusion)])                               # A4..A1
        ### END SOLUTION
        self.out_channels = l1_width

    def forward(self, levels):
        _, l1, l2, l3, l4, l5 = levels              # L_l: (B, C_l, H / 2**l, W / 2**l); MSFA does not read L0
        ### BEGIN SOLUTION: up path 1 (U5..U2), down path (D2 = U2, then D3..D5), up path 2 (A5..A1); return A1
        u5 = self.top(l5)                           # (B, 256, H/32, W/32)
        u4 = self.up1[0](u5, l4)                    # (B, 256, H/16, W/16)
        u3 = self.up1[1](u4, l3)                    # (B, 256, H/8, W/8)
        u2 = self.up1[2](u3, l2)                    # (B, 256, H/4, W/4) = D2
        d3 = self.down[0](u2, u3)                   # (B, C3, H/8, W/8)
        d4 = self.down[1](d3, u4)                   # (B, C4, H/16, W/16)
        d5 = self.down[2](d4, u5)                   # (B, C5, H/32, W/32)
        a = self.top2(d5)                           # A5 (B, 256, H/32, W/32)
        a = self.up2[0](a, d4)                      # A4 (B, 256, H/16, W/16)
        a = self.up2[1](a, d3)                      # A3 (B, 256, H/8, W/8)
        a = self.up2[2](a, u2)                      # A2 (B, 128, H/4, W/4)
        return self.up2[3](a, l1)                   # A1 (B, 64, H/2, W/2)
        ### END SOLUTION


# %% [exercise] l5-fusion
def l5_fusion_size(c4, c5, width=256):
    """The L5 fusion of MSFA's down path, a 3x3 conv (with bias) + BatchNorm -> (in_channels, out_channels, parameters).

    c4, c5: the backbone's widths at L4 and L5 (D4 is C4 wide before the stride-2 conv doubles it);
    width: the channels of U5, the skip it is concatenated with.
    """
    ### BEGIN SOLUTION: count by hand: k^2 C_in C_out + C_out for the conv, 2 C_out for the BatchNorm
    in_channels = 2 * c4 + width                                       # doubled D4, concatenated with U5
    out_channels = c5                                                  # D5 returns to the backbone's width
    parameters = 9 * in_channels * out_channels + out_channels + 2 * out_channels   # 3x3 conv + bias + BN
    ### END SOLUTION
    return in_channels, out_channels, parameters
