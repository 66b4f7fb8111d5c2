# Solutions of notebook 00_setup_and_data (tools/exercises.py writes the student cells from this file).
# Each "# %% [exercise] ID" block is the full solved source of one exercise cell; the parts between
# "### BEGIN SOLUTION" and "### END SOLUTION" are what the student writes. A "# %% [answer] ID" block holds the
# answer to a question of the notebook's text (never written into the notebook).

# %% [exercise] to-network-grid
sample = DATASETS["isbi2015"][0]                     # ISBI image 001
(H, W), (x, y) = sample.size, sample.landmarks[0]    # original (H, W); landmark 1 (sella) as (x, y)
print(f"image {sample.image_id}: (H, W) = ({H}, {W}), landmark 1 at (x, y) = ({x}, {y})")


def to_network_grid(point, size):
    """(x, y) in an image of size (H, W) -> (x', y') on the paper's 800x640 network input.

    Pixel centres at integer coordinates (0-based) in both grids; image edges map onto image edges.
    """
    x, y = point
    height, width = size
    ### BEGIN SOLUTION: the formula above, for x with W and 640, for y with H and 800
    return (x + 0.5) * 640 / width - 0.5, (y + 0.5) * 800 / height - 0.5
    ### END SOLUTION


# %% [answer] why-not-s-x
# Why not simply x * 640 / W?  Resizing maps the image's *edges* onto each other, and with pixel centres at
# integers the left edge sits at -1/2 in both grids, not at 0: the point must be measured from that edge before
# scaling (x + 1/2) and moved back after (- 1/2). x * 640 / W scales from the first pixel's centre instead and is
# off by (1 - s) / 2 pixels, s = 640 / W (about 0.34 px on the 800x640 grid for a 1935-pixel-wide cephalogram).
