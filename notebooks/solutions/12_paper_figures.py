# Solutions of notebook 12_paper_figures (tools/exercises.py writes the student cells from this file).
# Each "# %% [exercise] ID" block is the full solved source of one exercise cell; the parts between
# "### BEGIN SOLUTION" and "### END SOLUTION" are what the student writes.

# %% [exercise] heatmaps-to-points
def heatmaps_to_points(hm, input_size, image_size, method):
    """(K, 2) (x, y) in original pixels from heatmaps hm (1, K, h, w) on the grid of the network's final output."""
    ### BEGIN SOLUTION: decode_heatmaps, then rescale_points twice (heatmap grid -> input grid -> original image)
    coords, _ = decode_heatmaps(hm, method=method)                                # (1, K, 2) heatmap grid
    in_input = rescale_points(coords.double(), tuple(hm.shape[-2:]), input_size)  # (1, K, 2) input grid
    return rescale_points(in_input.numpy(), input_size, image_size)[0]            # (K, 2) original pixels
    ### END SOLUTION
