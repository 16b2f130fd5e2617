"""Tables and figures from finished runs: `scl table ...`, `scl figure ...`.

  collect.py   run folders and baseline results -> pandas tables; mean/std over seeds
  tables.py    Tables 1-3: reproduced numbers beside the paper's (md, csv, tex)
  figures.py   Figures 3-6 and training curves (matplotlib, Agg, PNG)

Nothing here trains or scores a model: every number comes from a metrics.json written
by `scl train` / `scl baseline`, which score through `scl.metrics.evaluate`.
"""


class ReportError(ValueError):
    """Missing or unusable input for a table or figure. The message names the file and
    the command that makes it."""

    exit_code = 2  # scl.errors
