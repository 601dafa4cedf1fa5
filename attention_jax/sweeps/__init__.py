"""Sweeps: one workdir per point (and seed), failures isolated, results pooled in one report
(docs/sweeps.md). The names below load on first use (PEP 562), so that a Slurm task, which
imports :mod:`.slurm_job` only, starts without jax."""

import importlib

_EXPORTS = {
  "attention_jax.errors": "SweepError",
  "attention_jax.sweeps.point": "JOB_FILE LOG_FILE POINT_FILE STATUS_FILE SWEEP_FILE Point Sweep "
  "point_env read_status run_point",
  "attention_jax.sweeps.spec": "BY_LENGTH_CSV DECAY_CSV GRADIENTS_CSV SLUG_MAX apply_overrides "
  "load_sweep point_dir slug split_config_spec",
  "attention_jax.sweeps.tables": "markdown_table read_csv write_csv",
  "attention_jax.sweeps.report": "write_outputs",
  "attention_jax.sweeps.runner": "run_sweep",
  "attention_jax.sweeps.status": "status_lines",
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names.split()}
__all__ = sorted(_HOME)


def __getattr__(name: str):
  if name in _HOME:
    return getattr(importlib.import_module(_HOME[name]), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__))
