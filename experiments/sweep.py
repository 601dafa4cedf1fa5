r"""Run a sweep: every point of a config's ``sweep(arg)`` in its own workdir.

  python -m experiments.sweep --config configs/bottleneck.py[:ARG] \
      --workdir DIR [--jobs N] [--seeds N] [--reanalyze] [--report_only] \
      [--max_retries N]
  python -m experiments.sweep --config ... --workdir DIR --launcher slurm \
      [--cluster slurm|local|debug] [--wait] [--slurm_partition P] \
      [--gpus_per_point G] [--timeout_min M] [--array_parallelism N] ...
  python -m experiments.sweep --workdir DIR --status | --cancel

Each point trains in ``DIR/<point>/`` (``experiments.run`` in a subprocess of
this command, or in a Slurm job array's task with ``--launcher slurm``) — with
several seeds (the config's ``SEEDS`` or ``--seeds N``) once per seed, in
``DIR/<point>_seed=<s>/``;
finished points are skipped on re-run; a failed point is recorded and the
others go on. Writes ``DIR/summary.csv`` (a row per seed-run),
``DIR/summary_by_point.csv`` (mean and 95% interval over seeds), ``DIR/summary.md``,
``DIR/plots/*.png`` (+ ``.svg``) and ``DIR/report.md`` (with ``--launcher slurm``: after
``--wait``, or with ``--report_only``). Exits 1 if a point failed or stopped.
"""

import sys

from absl import flags

from experiments import cli

_CONFIG = flags.DEFINE_string("config", None, "Config file with sweep(): configs/NAME.py[:ARG].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the sweep.")
_JOBS = flags.DEFINE_integer(
  "jobs", 1, "--launcher local: points run at once (CPU); at most one per GPU."
)
_REANALYZE = flags.DEFINE_bool(
  "reanalyze",
  False,
  "Also re-run finished points: training is skipped (it "
  "finished), the per-point analyses run again.",
)
_REPORT_ONLY = flags.DEFINE_bool(
  "report_only",
  False,
  "Run nothing: write summary.csv, report.md and plots of the points finished so far.",
)
_MAX_RETRIES = flags.DEFINE_integer(
  "max_retries",
  0,
  "A point that fails for a reason of its own runs again at "
  "most this many times (--launcher slurm: with --wait).",
)
_SEEDS = flags.DEFINE_integer(
  "seeds",
  None,
  "Runs of each point, seeds SEEDS[:N] of the config (default: its SEEDS, else 1: the "
  "config's seed); each seed-run has its own workdir DIR/<point>_seed=<s>/.",
)
_LAUNCHER = flags.DEFINE_enum(
  "launcher",
  "local",
  ["local", "slurm"],
  "local: the points as subprocesses of this command; slurm: one Slurm job array through submitit.",
)
_CLUSTER = flags.DEFINE_enum(
  "cluster",
  None,
  ["slurm", "local", "debug"],
  "--launcher slurm: submitit's "
  "executor: slurm (default), local (this machine, same code path), debug "
  "(in this process, one point after another; implies --wait).",
)
_WAIT = flags.DEFINE_bool(
  "wait",
  False,
  "--launcher slurm: wait for the points, resubmit stopped ones, then write the report.",
)
_STATUS = flags.DEFINE_bool(
  "status",
  False,
  "Print one line per point (pending, running, done, failed, stopped) and a total; runs nothing.",
)
_CANCEL = flags.DEFINE_bool(
  "cancel",
  False,
  "Cancel the sweep's pending and running jobs (--launcher slurm); they save first.",
)
_SLURM_PARTITION = flags.DEFINE_string("slurm_partition", None, "Slurm partition.")
_SLURM_ACCOUNT = flags.DEFINE_string("slurm_account", None, "Slurm account.")
_SLURM_QOS = flags.DEFINE_string("slurm_qos", None, "Slurm quality of service.")
_SLURM_EXTRA = flags.DEFINE_multi_string(
  "slurm_extra",
  None,
  "KEY=VALUE: an sbatch option passed as is (e.g. mem=32G, "
  "constraint=a100); repeat the flag for several.",
)
_GPUS = flags.DEFINE_integer(
  "gpus_per_point", None, "GPUs of each point (default 0, or the config's SLURM)."
)
_CPUS = flags.DEFINE_integer(
  "cpus_per_point",
  None,
  "CPU cores of each point, split over its tasks (sets each process's threads).",
)
_TIMEOUT = flags.DEFINE_integer(
  "timeout_min", None, "Time limit of each job, minutes (default 60); it is requeued at the limit."
)
_ARRAY_PARALLELISM = flags.DEFINE_integer(
  "array_parallelism",
  None,
  "Points running at once (Slurm: the array's %N; local cluster: default 1).",
)
_NODES = flags.DEFINE_integer("nodes_per_point", None, "Nodes of each point.")
_TASKS = flags.DEFINE_integer(
  "tasks_per_node", None, "Processes of each point per node (jax.distributed when > 1 in all)."
)
flags.mark_flag_as_required("workdir")

_RESOURCE_FLAGS = (
  _SLURM_PARTITION,
  _SLURM_ACCOUNT,
  _SLURM_QOS,
  _SLURM_EXTRA,
  _GPUS,
  _CPUS,
  _TIMEOUT,
  _ARRAY_PARALLELISM,
  _NODES,
  _TASKS,
)


def _given(holder) -> bool:
  return flags.FLAGS[holder.name].present > 0


def _check_flags() -> None:
  """Bad combinations, one line each, before anything is read or written."""
  modes = [h.name for h in (_STATUS, _CANCEL, _REPORT_ONLY) if h.value]
  if len(modes) > 1:
    cli.fail(f"--{modes[0]} and --{modes[1]} cannot be combined")
  if _STATUS.value or _CANCEL.value:
    extra = [
      f"--{h.name}"
      for h in (_CONFIG, _WAIT, _REANALYZE, _JOBS, _LAUNCHER, _CLUSTER, _MAX_RETRIES, _SEEDS)
      + _RESOURCE_FLAGS
      if _given(h)
    ]
    if extra:
      cli.fail(f"--{modes[0]} reads the sweep in --workdir and takes no {', '.join(extra)}")
    return
  if _CONFIG.value is None:
    cli.fail("--config is required (or --status / --cancel with --workdir)")
  if _JOBS.value < 1:
    cli.fail(f"--jobs must be >= 1, got {_JOBS.value}")
  if _SEEDS.value is not None and _SEEDS.value < 1:
    cli.fail(f"--seeds must be >= 1, got {_SEEDS.value}")
  if _MAX_RETRIES.value < 0:
    cli.fail(f"--max_retries must be >= 0, got {_MAX_RETRIES.value}")
  if _LAUNCHER.value == "local":
    slurm_only = [f"--{h.name}" for h in (_CLUSTER, _WAIT) + _RESOURCE_FLAGS if _given(h)]
    if slurm_only:
      cli.fail(f"{', '.join(slurm_only)}: for --launcher slurm only")
  elif _given(_JOBS):
    cli.fail(
      "--jobs is for --launcher local; with --launcher slurm, "
      "--array_parallelism caps the points running at once"
    )
  if _REPORT_ONLY.value:
    extra = [
      f"--{h.name}"
      for h in (_REANALYZE, _WAIT, _MAX_RETRIES, _JOBS, _CLUSTER) + _RESOURCE_FLAGS
      if _given(h)
    ]
    if extra:
      cli.fail(f"--report_only runs nothing: drop {', '.join(extra)}")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  _check_flags()
  given = {h.name: h.value for h in _RESOURCE_FLAGS if _given(h)}
  slurm_run = _LAUNCHER.value == "slurm" and not _REPORT_ONLY.value
  if slurm_run:  # before the imports of jax and the config: answers at once
    from attention_jax.sweeps import slurm_job

    with cli.errors_as_one_line():
      slurm_job.check(
        _CLUSTER.value or "slurm", _WORKDIR.value, given, _WAIT.value, _MAX_RETRIES.value
      )
  from attention_jax.sweeps import runner, slurm, status

  def out(s):
    print(s, flush=True)

  statuses = None
  try:
    with cli.errors_as_one_line():
      if _STATUS.value:
        for line in status.status_lines(_WORKDIR.value, slurm.job_states(_WORKDIR.value)):
          out(line)
        return
      if _CANCEL.value:
        slurm.cancel(_WORKDIR.value, print_fn=out)
        return
      if not slurm_run:
        statuses = runner.run_sweep(
          _CONFIG.value,
          _WORKDIR.value,
          jobs=_JOBS.value,
          print_fn=out,
          reanalyze=_REANALYZE.value,
          report_only=_REPORT_ONLY.value,
          max_retries=_MAX_RETRIES.value,
          seeds=_SEEDS.value,
        )
      else:
        command = ["python -m experiments.sweep"] + [
          a for a in sys.argv[1:] if a not in ("--wait", "--nowait")
        ]
        launch = slurm.Launch(
          wait=_WAIT.value,
          max_retries=_MAX_RETRIES.value,
          reanalyze=_REANALYZE.value,
          seeds=_SEEDS.value,
          command=" ".join(command),
        )
        statuses = slurm.run_sweep(
          _CONFIG.value, _WORKDIR.value, _CLUSTER.value or "slurm", given, launch, print_fn=out
        )
  except KeyboardInterrupt:
    cli.fail("interrupted; run the same command again to resume", code=130)
  if (
    statuses
    and not _REPORT_ONLY.value
    and any(s["status"] in ("failed", "stopped") for s in statuses)
  ):
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main, exit_on_interrupt=False)  # stops its points first
