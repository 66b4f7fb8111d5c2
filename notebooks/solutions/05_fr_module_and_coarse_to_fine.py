# Solutions of notebook 05_fr_module_and_coarse_to_fine (tools/exercises.py writes the student cells from this file).
# Each "# %% [exercise] ID" block is the full solved source of one exercise cell; the parts between
# "### BEGIN SOLUTION" and "### END SOLUTION" are what the student writes.

# %% [exercise] fr
class FR(nn.Module):
    """FR (use_heatmaps=True) or FR* (False): full-resolution heatmaps (B, K, H, W) from
    features (B, F, H/2, W/2) (MSFA's A1), c0 (B, C0, H, W) and, for FR only, heatmaps (B, K, H/2, W/2) (MSFA's).

    The package's names: self.use_heatmaps, and self.head = heatmap_head on the concatenated channels.
    forward: up-sample features (and heatmaps) bilinearly (align_corners=False) to c0's size, concatenate
    [up(features), c0, up(heatmaps)] in that order along the channels, then self.head.
    """

    def __init__(self, feature_ch, c0_ch, num_landmarks, use_heatmaps=True):
        super().__init__()
        ### BEGIN SOLUTION: self.use_heatmaps, then self.head on all the concatenated channels
        self.use_heatmaps = use_heatmaps
        self.head = heatmap_head(feature_ch + c0_ch + (num_landmarks if use_heatmaps else 0), num_landmarks)
        ### END SOLUTION

    def forward(self, features, c0, heatmaps=None):
        ### BEGIN SOLUTION: a list of parts, torch.cat along dim=1, then self.head
        up = lambda t: F.interpolate(t, size=c0.shape[-2:], mode="bilinear", align_corners=False)
        parts = [up(features), c0]                          # (B, F, H, W), (B, C0, H, W)
        if self.use_heatmaps:
            parts.append(up(heatmaps))                      # (B, K, H, W)
        return self.head(torch.cat(parts, dim=1))           # (B, F + C0 [+ K], H, W) -> (B, K, H, W)
        ### END SOLUTION


# %% [exercise] coarse-to-fine-loss
def ewc(pred, target, alpha=40.0):
    """Eq. 3 (notebook 02): mean(alpha^y (y - y_hat)^2) over every element."""
    return torch.mean(alpha ** target * (pred - target) ** 2)


def coarse_to_fine_loss(output, points, input_size, sigma=10.0, alpha=40.0, return_parts=False):
    """Section 3.4: the sum, over the outputs of a HeatmapOutput(final, coarse) that are not None, of the EWC loss of
    each output against Eq. 1 targets drawn on that output's own grid, with the same sigma in that grid's pixels.

    points: (B, K, 2) landmark (x, y) in the network-input grid of size input_size (H, W).
    Returns the scalar loss, or (loss, {"final": float, "coarse": float}) with return_parts=True
    (only the outputs that exist; FR* and MSFA alone have no coarse output).
    """
    total, parts = 0.0, {}
    ### BEGIN SOLUTION: loop over zip(output._fields, output), skip None, targets on each output's own grid
    for name, heatmaps in zip(output._fields, output):
        if heatmaps is None:
            continue
        size = tuple(heatmaps.shape[-2:])                                       # (h, w) of this output
        targets = encode_heatmaps(rescale_points(points, input_size, size), size, sigma)   # (B, K, h, w)
        value = ewc(heatmaps, targets, alpha)
        parts[name] = value.item()
        total = total + value
    ### END SOLUTION
    return (total, parts) if return_parts else total


# %% [exercise] fr-channels
def fr_input_channels(num_landmarks, use_heatmaps=True):
    """Input channels of the first convolution of the FR head (FR*: use_heatmaps=False), for DenseNet-121."""
    ### BEGIN SOLUTION: A1 (64 channels) + C0 (32) + the coarse heatmaps (K, FR only)
    return 64 + 32 + (num_landmarks if use_heatmaps else 0)
    ### END SOLUTION
