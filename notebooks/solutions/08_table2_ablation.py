# Solutions of notebook 08_table2_ablation (tools/exercises.py writes the student cells from this file).
# Each "# %% [exercise] ID" block is the full solved source of one exercise cell; the parts between
# "### BEGIN SOLUTION" and "### END SOLUTION" are what the student writes.

# %% [exercise] shared-run
### BEGIN SOLUTION: map (dataset, key) -> Table 1 row, then look up each Table 2 experiment
table1_rows = {(e.dataset, e.key): e.row for e in table_experiments("table1")}
shared = {e.row: table1_rows[(e.dataset, e.key)] for e in table_experiments("table2") if (e.dataset, e.key) in table1_rows}
### END SOLUTION
shared                                                    # {Table 2 row: Table 1 row}
