"""The reproduction wing: the paper's experiments, its Tables 1-5 beside ours, baselines and audits.

``experiments`` (one entry per table row), ``runs`` (finding the runs that fill a row), ``reproduce`` (train and
export a row), ``tables`` (our numbers beside the paper's), ``kit_results`` (the committed results), ``quickrun``
(the course's quick mode), ``mean_shape`` (the no-learning floor), ``audit`` and ``official_style`` (what the
official code does differently), ``rescore`` (metrics again from a predictions file) and ``paper`` (the paper's
numbers as data).
"""
