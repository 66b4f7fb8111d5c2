# Solutions of notebook 10_table4_hand (tools/exercises.py writes the student cells from this file).
# Each "# %% [exercise] ID" block is the full solved source of one exercise cell; the parts between
# "### BEGIN SOLUTION" and "### END SOLUTION" are what the student writes.

# %% [exercise] pool-folds
n = np.array([summary["labelled_images"] for summary in SUMMARIES], dtype=float)   # (3,) test images per fold
m = np.array([summary["mre"] for summary in SUMMARIES])                             # (3,) fold MREs, mm
sd = np.array([summary["sd"] for summary in SUMMARIES])                             # (3,) fold SDs, mm
### BEGIN SOLUTION: weight each fold by its images; for the SD pool the second moments sd^2 + m^2
my_mre = np.sum(n * m) / n.sum()
my_sd = np.sqrt(np.sum(n * (sd ** 2 + m ** 2)) / n.sum() - my_mre ** 2)
### END SOLUTION
