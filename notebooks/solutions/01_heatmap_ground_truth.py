# Solutions of notebook 01_heatmap_ground_truth (tools/exercises.py writes the student cells from this file).
# Each "# %% [exercise] ID" block is the full solved source of one exercise cell; the parts between
# "### BEGIN SOLUTION" and "### END SOLUTION" are what the student writes.

# %% [exercise] encode-heatmaps
def encode_heatmaps(points, size, sigma=10.0):
    """Eq. 1 for a batch: points (B, K, 2) as (x, y) -> (B, K, H, W) unnormalised Gaussians, peak 1 at each point.

    size is (H, W); pixel [i, j] (row i, column j) has its centre at (x, y) = (j, i), 0-based; sigma is in pixels
    of this grid. The points are used exactly as given (no rounding). Same dtype as points.
    """
    height, width = size
    ### BEGIN SOLUTION: torch.arange(width) against points[..., 0:1] (x), the same for y
    xs = torch.arange(width, dtype=points.dtype)                  # (W,) x of every column's centre
    ys = torch.arange(height, dtype=points.dtype)                 # (H,) y of every row's centre
    dx2 = (xs - points[..., 0:1]) ** 2                            # (B, K, W)
    dy2 = (ys - points[..., 1:2]) ** 2                            # (B, K, H)
    squared_distance = dy2[..., :, None] + dx2[..., None, :]      # (B, K, H, W)
    return torch.exp(-squared_distance / (2.0 * sigma ** 2))
    ### END SOLUTION


# %% [exercise] official-half-offset
def official_half_offset():
    """Your answer: by how many 800x640 input pixels per axis the decoded official half-resolution target misses
    the landmark (negative = up / left), worked out on paper."""
    ### BEGIN SOLUTION
    # Drawn at x/2 on a grid whose first pixel centre is 1, the peak sits at 0-based index x/2 - 1; rescale_points
    # takes it to (x/2 - 1 + 1/2) * 2 - 1/2 = x - 3/2 on the input grid (and the same for y).
    return -1.5
    ### END SOLUTION
