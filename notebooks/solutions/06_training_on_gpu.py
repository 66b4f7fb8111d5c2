# Solutions of notebook 06_training_on_gpu (tools/exercises.py writes the student cells from this file).
# Each "# %% [exercise] ID" block is the full solved source of one exercise cell; the parts between
# "### BEGIN SOLUTION" and "### END SOLUTION" are what the student writes.

# %% [exercise] sdr-by-hand
def sdr_by_hand(points, truth, mm_per_px, radius):
    """SDR at `radius` mm, in %: points, truth (N, K, 2) (x, y) in original pixels; error = mm_per_px * ||p - g||."""
    ### BEGIN SOLUTION: the radial error of every landmark in mm (N, K), then the percentage of them <= radius
    errors_mm = mm_per_px * np.linalg.norm(points - truth, axis=-1)          # (N, K)
    return 100.0 * np.mean(errors_mm <= radius)
    ### END SOLUTION
