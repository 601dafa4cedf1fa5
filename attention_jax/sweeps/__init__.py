"""Sweeps: one workdir per point, failures isolated, results aggregated.

* :mod:`.spec` — a sweep's definition (``sweep(arg)`` beside ``get_config``),
  points, slugs, overrides;
* the two launchers, each with a ``run_sweep``: :mod:`.runner` (``local``:
  the points as subprocesses of the sweep command, ``--jobs N``) and
  :mod:`.slurm` (``slurm``: one Slurm job array through submitit; its
  ``local`` and ``debug`` clusters run the same code path without Slurm).
  Either way a point runs as :func:`.runner.run_point` — ``experiments.run``
  then the analyses — which keeps its ``sweep_status.json`` current;
* :mod:`.status` — where a sweep stands (``--status``);
* :mod:`.analyses` — per-point analyses after training (``by_length``,
  ``gradients``);
* :mod:`.report` — ``summary.csv``/``summary.md``/``report.md`` and, through
  :mod:`.plots`, the report's figures; :mod:`.tables` — CSV/Markdown helpers.
"""

from attention_jax.errors import SweepError
from attention_jax.sweeps.spec import (BY_LENGTH_CSV, DECAY_CSV, GRADIENTS_CSV,
                                       JOB_FILE, LOG_FILE, POINT_FILE, SLUG_MAX,
                                       STATUS_FILE, SWEEP_FILE, Point, Sweep,
                                       apply_overrides, load_sweep, point_dir,
                                       slug, split_config_spec)
from attention_jax.sweeps.tables import markdown_table, read_csv, write_csv
from attention_jax.sweeps.report import write_outputs
from attention_jax.sweeps.runner import point_env, read_status, run_point, run_sweep
from attention_jax.sweeps.status import status_lines
