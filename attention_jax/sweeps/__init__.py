"""Sweeps: one workdir per point, failures isolated, results aggregated.

* :mod:`.spec` — a sweep's definition (``sweep(arg)`` beside ``get_config``),
  points, slugs, overrides;
* :mod:`.runner` — the points as local subprocesses (``--jobs N``);
* :mod:`.analyses` — per-point analyses after training (``by_length``,
  ``gradients``);
* :mod:`.report` — ``summary.csv``/``summary.md``/``report.md`` and, through
  :mod:`.plots`, the report's figures; :mod:`.tables` — CSV/Markdown helpers.
"""

from attention_jax.errors import SweepError
from attention_jax.sweeps.spec import (BY_LENGTH_CSV, DECAY_CSV, GRADIENTS_CSV,
                                       LOG_FILE, POINT_FILE, SLUG_MAX,
                                       STATUS_FILE, Point, Sweep,
                                       apply_overrides, load_sweep, point_dir,
                                       slug, split_config_spec)
from attention_jax.sweeps.tables import markdown_table, read_csv, write_csv
from attention_jax.sweeps.report import write_outputs
from attention_jax.sweeps.runner import point_env, read_status, run_point, run_sweep
