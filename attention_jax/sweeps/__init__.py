"""Sweeps: one workdir per point, failures isolated, results aggregated.

* :mod:`.spec` — a sweep's definition (``sweep(arg)`` beside ``get_config``),
  points, slugs, overrides;
* :mod:`.point` — one point's files, commands, environment and run
  (:func:`.point.run_point`: ``experiments.run`` then the analyses, keeping
  its ``sweep_status.json`` current), whichever launcher started it;
* the two launchers, each with a ``run_sweep``: :mod:`.runner` (``local``:
  the points as subprocesses of the sweep command, ``--jobs N``) and
  :mod:`.slurm` (``slurm``: one Slurm job array through submitit, whose tasks
  run :class:`.slurm_job.PointJob`; its ``local`` and ``debug`` clusters run
  the same code path without Slurm);
* :mod:`.status` — where a sweep stands (``--status``);
* :mod:`.analyses` — per-point analyses after training (``by_length``,
  ``gradients``, ``probe``);
* :mod:`.report` — ``summary.csv``/``summary.md``/``report.md`` and, through
  :mod:`.figures`, the report's figures; :mod:`.tables` — CSV/Markdown helpers.

The names below are loaded on first use (PEP 562), so that a Slurm task,
which imports :mod:`.slurm_job` only, starts without importing jax.
"""

import importlib

_EXPORTS = {
  "attention_jax.errors": ("SweepError",),
  "attention_jax.sweeps.point": (
    "JOB_FILE",
    "LOG_FILE",
    "POINT_FILE",
    "STATUS_FILE",
    "SWEEP_FILE",
    "Point",
    "Sweep",
    "point_env",
    "read_status",
    "run_point",
  ),
  "attention_jax.sweeps.spec": (
    "BY_LENGTH_CSV",
    "DECAY_CSV",
    "GRADIENTS_CSV",
    "SLUG_MAX",
    "apply_overrides",
    "load_sweep",
    "point_dir",
    "slug",
    "split_config_spec",
  ),
  "attention_jax.sweeps.tables": ("markdown_table", "read_csv", "write_csv"),
  "attention_jax.sweeps.report": ("write_outputs",),
  "attention_jax.sweeps.runner": ("run_sweep",),
  "attention_jax.sweeps.status": ("status_lines",),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str):
  if name in _HOME:
    return getattr(importlib.import_module(_HOME[name]), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__))
