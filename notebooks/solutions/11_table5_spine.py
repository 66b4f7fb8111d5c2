# Solutions of notebook 11_table5_spine (tools/exercises.py writes the student cells from this file).
# Each "# %% [exercise] ID" block is the full solved source of one exercise cell; the parts between
# "### BEGIN SOLUTION" and "### END SOLUTION" are what the student writes.

# %% [exercise] spine-mse
pred1, truth1, sizes1 = FOLDS[1]                         # (N, 68, 2) px, (N, 68, 2) px, (N, 2) as (H, W)
### BEGIN SOLUTION: divide x by W and y by H (sizes are (H, W)), then the mean of the squared differences
wh = sizes1[:, None, ::-1]                                 # (N, 1, 2) as (W, H)
my_fold1 = np.mean((pred1 / wh - truth1 / wh) ** 2)
### END SOLUTION
### BEGIN SOLUTION: weight each fold's MSE by its number of validation images
n = np.array([s["labelled_images"] for s in SUMMARIES], dtype=float)
my_pooled = np.sum(n * np.array([s["mse_fraction"] for s in SUMMARIES])) / n.sum()
### END SOLUTION
