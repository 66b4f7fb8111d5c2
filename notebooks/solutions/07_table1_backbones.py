# Solutions of notebook 07_table1_backbones (tools/exercises.py writes the student cells from this file).
# Each "# %% [exercise] ID" block is the full solved source of one exercise cell; the parts between
# "### BEGIN SOLUTION" and "### END SOLUTION" are what the student writes.

# %% [exercise] mre-columns
mre = result.frame[result.frame.metric == "mre"].set_index("row")            # one line per row of the table
### BEGIN SOLUTION: ours as it is; Δ = ours − paper
my_ours = mre["ours"]
my_delta = mre["ours"] - mre["paper"]
### END SOLUTION


# %% [exercise] mre-by-hand
per_image = ERRORS.get("DenseNet-121")                       # (M, K) mm, or None without a run or the data
if per_image is not None:
    ### BEGIN SOLUTION: the mean of all finite errors
    my_mre = np.nanmean(per_image)
    ### END SOLUTION
    assert np.isclose(my_mre, mre.loc["DenseNet-121", "ours"], rtol=1e-4), (my_mre, mre.loc["DenseNet-121", "ours"])
    print(f"DenseNet-121: MRE {my_mre:.3f} mm by hand = {mre.loc['DenseNet-121', 'ours']:.3f} mm in the table")
