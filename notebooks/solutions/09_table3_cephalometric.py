# Solutions of notebook 09_table3_cephalometric (tools/exercises.py writes the student cells from this file).
# Each "# %% [exercise] ID" block is the full solved source of one exercise cell; the parts between
# "### BEGIN SOLUTION" and "### END SOLUTION" are what the student writes.

# %% [exercise] test1-by-hand
scored = run_errors(test1.run, "test1", data_root=ISBI) if test1.run and ISBI is not None else None
if scored is not None:
    labelled = np.isfinite(scored.truth).all(axis=(1, 2))                  # (N,) images with ground truth
    ### BEGIN SOLUTION: radial errors in mm (0.1 mm per pixel), then MRE, population SD, SDR per radius (in %)
    errors_mm = 0.1 * np.linalg.norm(scored.pred[labelled] - scored.truth[labelled], axis=-1)   # (M, 19)
    my_mre, my_sd = errors_mm.mean(), errors_mm.std()
    my_sdr = {r: 100.0 * np.mean(errors_mm <= r) for r in (2, 2.5, 3, 4)}
    ### END SOLUTION
