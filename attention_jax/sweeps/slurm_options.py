"""What the ``slurm`` launcher asks for and checks, before anything is written.

Each point's resources come from the flags given on the command line, over
the config's ``SLURM`` dict (or ``slurm(arg)``), over :data:`RESOURCES`
(:func:`merge_options`); :func:`check_environment` refuses a Slurm sweep
without Slurm or in a directory the nodes cannot share. Imports nothing
heavy, so that ``experiments.sweep`` answers a bad flag at once.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Any

from attention_jax.errors import SweepError

CLUSTERS = ("slurm", "local", "debug")
NOT_SHARED = ("/tmp",)  # directories a cluster's nodes do not share
# The notice, in seconds, that a job gets (USR2) before its time limit:
# submitit's signal_delay_s on both clusters (``#SBATCH --signal=USR2@90``).
SIGNAL_DELAY_S = 90

SLURM_ONLY = ("slurm_partition", "slurm_account", "slurm_qos", "slurm_extra", "nodes_per_point")
_INTS = {
  "gpus_per_point": 0,
  "cpus_per_point": 1,
  "timeout_min": 1,
  "array_parallelism": 1,
  "nodes_per_point": 1,
  "tasks_per_node": 1,
}


@dataclasses.dataclass(frozen=True)
class Options:
  """Where and how the points run (flags over the config's ``SLURM``)."""

  cluster: str = "slurm"
  slurm_partition: str | None = None
  slurm_account: str | None = None
  slurm_qos: str | None = None
  slurm_extra: dict = dataclasses.field(default_factory=dict)
  gpus_per_point: int = 0
  cpus_per_point: int | None = None
  timeout_min: int = 60
  array_parallelism: int | None = None
  nodes_per_point: int = 1
  tasks_per_node: int = 1

  @property
  def tasks(self) -> int:
    return self.nodes_per_point * self.tasks_per_node

  @property
  def parallel(self) -> int | None:
    """Points at once: the array's cap; 1 on the debug cluster; the local
    cluster's default is 1 (as ``--jobs``)."""
    if self.cluster == "debug":
      return 1
    if self.cluster == "local":
      return self.array_parallelism or 1
    return self.array_parallelism


# Resources of each point: flag name -> default (the fields of Options). A
# config's sweep may set them (``SLURM = {...}`` or ``slurm(arg)``); a flag
# given on the command line wins.
RESOURCES: dict[str, Any] = {
  f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
  for f in dataclasses.fields(Options)
  if f.name != "cluster"
}


def parse_extra(items) -> dict[str, str]:
  """``["mem=32G", "constraint=a100"]`` (``--slurm_extra``) -> a dict."""
  if isinstance(items, dict):
    return {str(k): str(v) for k, v in items.items()}
  out = {}
  for item in items or ():
    key, sep, value = str(item).partition("=")
    if not sep or not key.strip():
      raise SweepError(
        f"--slurm_extra {item!r}: expected KEY=VALUE (an sbatch option, e.g. mem=32G)"
      )
    out[key.strip()] = value.strip()
  return out


def merge_options(
  flags: dict[str, Any],
  config_resources: dict[str, Any],
  cluster: str = "slurm",
  where: str = "config",
) -> Options:
  """Options from the flags given (``flags``: name -> value, only those on the
  command line) over the config's ``SLURM`` dict over :data:`RESOURCES`.

  Raises SweepError, one line naming the flag or key, for an unknown key, a
  bad value, or a flag that would do nothing on ``cluster``.
  """
  if cluster not in CLUSTERS:
    raise SweepError(f"--cluster {cluster!r}: expected one of {', '.join(CLUSTERS)}")
  for key in config_resources:
    if key not in RESOURCES:
      raise SweepError(f"{where}: SLURM key {key!r} unknown; known: {', '.join(RESOURCES)}")
  for name in flags:
    if name not in RESOURCES:
      raise SweepError(f"--{name} is not a resource flag")
    if cluster == "debug":
      raise SweepError(
        f"--{name} does nothing with --cluster debug (each point "
        "runs inside this command, one after another)"
      )
    if cluster == "local" and name in SLURM_ONLY:
      raise SweepError(
        f"--{name} does nothing with --cluster local (submitit's "
        "local executor: one node, this machine)"
      )
  values, origin = dict(RESOURCES), {k: f"--{k}" for k in RESOURCES}
  for key, value in config_resources.items():
    if cluster == "slurm" or key not in SLURM_ONLY:  # a cluster's names: Slurm only
      values[key], origin[key] = value, f"{where}: SLURM[{key!r}]"
  values.update(flags)
  for key, low in _INTS.items():
    v = values[key]
    if v is None and key in ("cpus_per_point", "array_parallelism"):
      continue
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
      raise SweepError(f"{origin[key]} is {v!r}: expected an integer >= {low}")
  for key in ("slurm_partition", "slurm_account", "slurm_qos"):
    if values[key] is not None and not (isinstance(values[key], str) and values[key]):
      raise SweepError(f"{origin[key]} is {values[key]!r}: expected a name")
  values["slurm_extra"] = parse_extra(values["slurm_extra"])
  options = Options(cluster=cluster, **values)
  if cluster != "debug" and options.timeout_min * 60 <= SIGNAL_DELAY_S:
    raise SweepError(
      f"{origin['timeout_min']} is {options.timeout_min}: the points get "
      f"their save signal {SIGNAL_DELAY_S} s before the time limit; "
      f"expected >= {SIGNAL_DELAY_S // 60 + 1}"
    )
  if options.gpus_per_point % options.nodes_per_point:
    raise SweepError(
      f"--gpus_per_point {options.gpus_per_point} is not divisible by "
      f"--nodes_per_point {options.nodes_per_point}"
    )
  if (
    options.gpus_per_point
    and (options.gpus_per_point // options.nodes_per_point) % options.tasks_per_node
  ):
    raise SweepError(
      f"--gpus_per_point {options.gpus_per_point} on {options.nodes_per_point} "
      f"node(s) does not split evenly over --tasks_per_node "
      f"{options.tasks_per_node}"
    )
  if options.cpus_per_point and options.cpus_per_point % options.tasks:
    raise SweepError(
      f"--cpus_per_point {options.cpus_per_point} does not split evenly "
      f"over the point's {options.tasks} task(s)"
    )
  return options


def check_environment(cluster: str, workdir: str) -> None:
  """Refuses, before anything is written, a Slurm sweep without Slurm or in a
  directory the nodes cannot share."""
  if cluster == "slurm" and shutil.which("sbatch") is None:
    raise SweepError(
      "--launcher slurm: no Slurm on this machine (sbatch is not "
      "on PATH); add --cluster local to run the job array here "
      "through submitit, or use --launcher local"
    )
  real = os.path.realpath(workdir)
  for local in NOT_SHARED if cluster == "slurm" else ():
    if real == local or real.startswith(local + os.sep):
      raise SweepError(
        f"--workdir {workdir} is under {local}, which the "
        "cluster's nodes do not share; put the sweep on a shared "
        "filesystem"
      )


def check(cluster: str, workdir: str, flags: dict[str, Any], wait: bool, max_retries: int) -> None:
  """Every check that needs no config file: the cluster, the machine, the
  flags given (``flags``), ``--max_retries`` (retries come from a waiting
  command). Raises SweepError, one line."""
  merge_options(flags, {}, cluster)
  check_environment(cluster, workdir)
  if max_retries < 0:
    raise SweepError(f"--max_retries must be >= 0, got {max_retries}")
  if max_retries and not (wait or cluster == "debug"):
    raise SweepError(
      "--max_retries needs --wait with --launcher slurm (the "
      "waiting command resubmits a failed point)"
    )
