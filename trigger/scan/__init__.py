"""`trigger scan`: design-space exploration, one full `trigger compile` per point, on Dask.

`config` turns a scan config into validated points, `run` computes the missing ones on a Dask cluster
(resumable: a point's result file marks it done), `results` writes the table, the Pareto fronts, plots and
report. `cluster` holds the Dask and signal plumbing shared with `trigger data generate --scheduler`.
"""
