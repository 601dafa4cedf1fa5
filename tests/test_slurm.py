"""The Slurm launcher (submitit): the points of the shared test sweep through a
job array on submitit's local and debug executors, and on a fake Slurm.

Compared with the local launcher's run of the same points (``local_sweep``):
the same ``summary.csv`` rows and ``metrics.jsonl`` rows (timings aside), for
a point signalled with USR2 as at a time limit (requeued by submitit, resumed from its
checkpoint) and one whose whole job was SIGKILLed (resubmitted by the next
sweep command). Also: a point of two tasks runs as two JAX processes;
``--status`` names every state; the errors are one line, exit 2.
"""

import csv
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest
from conftest import ROOT, SWEEP_CONFIG, SWEEP_ENV

from attention_jax.sweeps import runner, slurm, slurm_job, status
from attention_jax.sweeps.point import JOB_FILE, LOG_FILE, STATUS_FILE, read_json
from attention_jax.sweeps.slurm_job import COORDINATOR_FILE, TASK_LOG

TIMING = {"seconds", "steps_per_sec", "tokens_per_sec"}


def _summary(workdir):
  with open(os.path.join(workdir, "summary.csv"), newline="") as f:
    return {
      r["point"]: {k: v for k, v in r.items() if k not in TIMING and v} for r in csv.DictReader(f)
    }  # a column of other points' overrides aside


def _metrics(point_dir):
  with open(os.path.join(point_dir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


def _log(point_dir, name=LOG_FILE):
  with open(os.path.join(point_dir, name)) as f:
    return f.read()


def _wait_for(condition, what, timeout=300):
  deadline = time.time() + timeout
  while not condition():
    if time.time() > deadline:
      raise AssertionError(f"timed out waiting for {what}")
    time.sleep(0.2)


def _descendants(pid):
  """``pid`` and every process below it (read from /proc)."""
  parent = {}
  for d in os.listdir("/proc"):
    if d.isdigit():
      try:
        with open(f"/proc/{d}/stat") as f:
          parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
      except (OSError, IndexError):
        pass
  out, todo = [], [pid]
  while todo:
    p = todo.pop()
    out.append(p)
    todo += [c for c, pp in parent.items() if pp == p]
  return out


def _paused(point_dir):
  return os.path.exists(os.path.join(point_dir, LOG_FILE)) and "paused after step 3" in _log(
    point_dir
  )


def _states(lines):
  """{point: (state, rest of the line)} from status lines."""
  return {
    line.split()[0]: (line.split()[1], line)
    for line in lines[2:]
    if not line.startswith(("total:", "stopped points"))
  }


# --------------------------------------------------------------------------
# The local cluster: a point preempted, a point killed


@pytest.fixture(scope="module")
def preempted(sweep_config, tmp_path_factory):
  """Two points submitted through submitit's local executor, each paused after
  step 3; then the first gets USR2 (what Slurm sends before a time limit,
  and the local executor at its time limit) and the whole job
  of the second is SIGKILLed (a node failure); then the same sweep command
  runs again with ``wait`` and ``tasks_per_node=2``: the first point is still
  queued (requeued by submitit), the second is resubmitted and runs as two
  JAX processes (one fixture for three behaviours: the suite's time is short)."""
  workdir = str(tmp_path_factory.mktemp("slurm_local") / "out")
  spec, flags = sweep_config + ":two", {"array_parallelism": 2}
  a, b = (os.path.join(workdir, s) for s in ("hidden_size=8", "hidden_size=12"))
  lines, snapshots = [], {}
  with pytest.MonkeyPatch.context() as mp:
    for k, v in SWEEP_ENV.items():
      mp.setenv(k, v)
    mp.setenv("ATTENTION_JAX_FAULT", "pause_at_step:3")
    assert (
      slurm.run_sweep(spec, workdir, cluster="local", flags=flags, print_fn=lines.append) is None
    )
    mp.delenv("ATTENTION_JAX_FAULT")
    _wait_for(lambda: _paused(a) and _paused(b), "both points to pause")
    snapshots["paused"] = status.status_lines(workdir, slurm.job_states(workdir))
    first = {d: read_json(os.path.join(d, JOB_FILE)) for d in (a, b)}
    os.kill(read_json(os.path.join(a, STATUS_FILE))["pid"], signal.SIGUSR2)
    killed = _descendants(int(first[b]["job_id"]))
    for pid in killed:
      os.kill(pid, signal.SIGKILL)
    _wait_for(lambda: slurm.job_state(first[b]) == "ended", "the killed job to end")
    # SIGKILL is asynchronous: under load a task may still be exiting.
    _wait_for(lambda: not any(status.pid_alive(p) for p in killed), "the killed tasks to exit")
    snapshots["killed"] = status.status_lines(workdir, slurm.job_states(workdir))
    statuses = slurm.run_sweep(
      spec,
      workdir,
      cluster="local",
      flags=dict(flags, tasks_per_node=2),
      launch=slurm.Launch(wait=True),
      print_fn=lines.append,
    )
  snapshots["end"] = status.status_lines(workdir, slurm.job_states(workdir))
  return SimpleNamespace(
    workdir=workdir, a=a, b=b, first=first, lines=lines, snapshots=snapshots, statuses=statuses
  )


def _assert_close(ours, theirs):
  """Equal; floats to 1e-6 (a batch split over two processes sums in
  another order)."""
  assert ours.keys() == theirs.keys()
  for k, v in theirs.items():
    try:
      assert float(ours[k]) == pytest.approx(float(v), rel=1e-6), k
    except (TypeError, ValueError):
      assert ours[k] == v, k


def test_local_cluster_writes_the_local_launchers_summary(preempted, local_sweep):
  assert [s["status"] for s in preempted.statuses] == ["done", "done"]
  local, ours = _summary(local_sweep[1]), _summary(preempted.workdir)
  assert ours.keys() == {"hidden_size=8", "hidden_size=12"}
  assert ours["hidden_size=8"] == local["hidden_size=8"]  # digit for digit
  _assert_close(ours["hidden_size=12"], local["hidden_size=12"])  # two processes
  assert "submitted 2 point(s) as jobs" in preempted.lines[1]
  assert any("--status" in line for line in preempted.lines)


def test_preempted_point_is_requeued_and_resumes(preempted, local_sweep):
  a, job_id = preempted.a, preempted.first[preempted.a]["job_id"]
  log = _log(a)
  assert "stopped by SIGTERM after step 3: checkpoint step 3 saved" in log
  assert "resumed from checkpoint at step 3" in log
  submitit_log = ""
  for ext in ("err", "out"):  # its warnings, its information
    with open(os.path.join(preempted.workdir, "slurm", f"{job_id}_0_log.{ext}")) as f:
      submitit_log += f.read()
  assert "Caught signal SIGUSR2" in submitit_log and "Requeued job" in submitit_log
  st = read_json(os.path.join(a, STATUS_FILE))
  assert st["job_id"] == job_id and st["attempt"] == 2  # the same job, requeued
  assert _metrics(a) == _metrics(os.path.join(local_sweep[1], "hidden_size=8"))


def test_killed_point_is_resubmitted_and_finishes_equal(preempted, local_sweep):
  b = preempted.b
  killed = _states(preempted.snapshots["killed"])["hidden_size=12"]
  assert killed[0] == "stopped" and "ended while the point ran" in killed[1]
  rerun = [line for line in preempted.lines if line.startswith("sweep ")][1]
  assert rerun.endswith("1 to submit (cluster local, 2 at a time)"), rerun
  record = read_json(os.path.join(b, JOB_FILE))
  assert record["job_id"] != preempted.first[b]["job_id"]  # a new job
  assert read_json(os.path.join(b, STATUS_FILE))["attempt"] == 2
  assert _log(b).count("$ ") == 2
  ours, theirs = _metrics(b), _metrics(os.path.join(local_sweep[1], "hidden_size=12"))
  assert [m["step"] for m in ours] == [m["step"] for m in theirs]
  for m, n in zip(ours, theirs, strict=True):
    _assert_close(m, n)


def test_resubmitted_point_of_two_tasks_runs_as_two_jax_processes(preempted):
  b = preempted.b
  assert "jax.distributed: process 0 of 2" in _log(b)
  assert "jax.distributed: process 1 of 2" in _log(b, TASK_LOG.format(rank=1))
  assert "data-parallel over 2 device(s), 2 process(es)" in _log(b)
  assert read_json(os.path.join(b, COORDINATOR_FILE))["address"].startswith("127.0.0.1:")
  assert "jax.distributed" not in _log(preempted.a)  # a: one task, as submitted


def test_status_follows_the_points(preempted):
  paused = _states(preempted.snapshots["paused"])
  assert {s for s, _ in paused.values()} == {"running"}
  assert _states(preempted.snapshots["killed"])["hidden_size=8"][0] in ("running", "pending")
  end = preempted.snapshots["end"]
  assert {s for s, _ in _states(end).values()} == {"done"}
  assert all(" 6/6" in line for _, line in _states(end).values())
  assert end[-1].startswith("total: 2 points: 2 done;") and end[-1].endswith("ETA 0:00:00")


# --------------------------------------------------------------------------
# The debug cluster; retries of the local launcher


def test_debug_cluster_runs_in_process_and_retries(
  sweep_config, local_sweep, tmp_path, monkeypatch
):
  for k, v in SWEEP_ENV.items():
    monkeypatch.setenv(k, v)
  workdir, lines = str(tmp_path / "out"), []
  statuses = slurm.run_sweep(
    sweep_config + ":debug",
    workdir,
    cluster="debug",
    launch=slurm.Launch(max_retries=1),
    print_fn=lines.append,
  )
  assert [s["status"] for s in statuses] == ["done", "failed"]
  local = _summary(local_sweep[1])
  for slug, row in _summary(workdir).items():
    assert row == local[slug]
  oom = os.path.join(workdir, "hidden_size=13")
  assert read_json(os.path.join(oom, STATUS_FILE))["attempt"] == 2
  assert any("hidden_size=13: failed (exit -9" in line and "retry 1 of 1" in line for line in lines)
  assert read_json(os.path.join(oom, JOB_FILE))["cluster"] == "debug"


def test_local_launcher_retries_a_failed_point(sweep_config, tmp_path):
  lines = []
  statuses = runner.run_sweep(
    sweep_config + ":oom", str(tmp_path / "out"), max_retries=2, print_fn=lines.append
  )
  assert statuses[0]["status"] == "failed" and statuses[0]["returncode"] == -9
  assert statuses[0]["attempt"] == 3
  assert [line for line in lines if "retry" in line] == [
    "hidden_size=13: failed (exit -9); retry 1 of 2",
    "hidden_size=13: failed (exit -9); retry 2 of 2",
  ]


# --------------------------------------------------------------------------
# --status on every state


def test_status_names_every_state(tmp_path):
  now = time.time()
  dead = subprocess.Popen([sys.executable, "-c", ""])
  dead.wait()
  host = socket.gethostname()
  points = {
    "a_done": {
      "status": "done",
      "returncode": 0,
      "seconds": 100.0,
      "started": now - 300,
      "finished": now - 200,
    },
    "b_failed": {
      "status": "failed",
      "returncode": 3,
      "seconds": 5.0,
      "log_tail": [
        "I1130 step 6",
        "error: the loss became nan at step 6; last good checkpoint: none",
        "I1130 x",
      ],
    },
    "c_never": None,
    "d_running": {"status": "running", "started": now - 50, "host": host, "pid": os.getpid()},
    "e_killed": {"status": "running", "started": now - 10, "host": host, "pid": dead.pid},
    "f_stopped": {
      "status": "stopped",
      "returncode": 75,
      "seconds": 30.0,
      "log_tail": ["error: stopped by SIGTERM after step 30: ..."],
    },
    "g_queued": None,
  }
  for slug, st in points.items():
    os.makedirs(tmp_path / slug)
    if st:
      (tmp_path / slug / STATUS_FILE).write_text(json.dumps(st))
  (tmp_path / "a_done" / "metrics.jsonl").write_text('{"step": 100, "split": "eval"}\n')
  (tmp_path / "d_running" / "metrics.jsonl").write_text('{"step": 50, "split": "train"}\n')
  (tmp_path / "g_queued" / JOB_FILE).write_text(json.dumps({"job_id": "77_6", "cluster": "slurm"}))
  (tmp_path / "sweep.json").write_text(
    json.dumps(
      {
        "title": "t",
        "launcher": {"name": "slurm", "cluster": "slurm", "array_parallelism": 2},
        "points": [{"slug": s, "overrides": {}, "steps": 100} for s in points],
      }
    )
  )
  lines = status.status_lines(str(tmp_path), lambda r: "pending")
  states = _states(lines)
  assert {k: s for k, (s, _) in states.items()} == {
    "a_done": "done",
    "b_failed": "failed",
    "c_never": "pending",
    "d_running": "running",
    "e_killed": "stopped",
    "f_stopped": "stopped",
    "g_queued": "pending",
  }
  assert "error: the loss became nan at step 6" in states["b_failed"][1]
  assert " 3 " in states["b_failed"][1] and " 75 " in states["f_stopped"][1]
  assert "0:01:40" in states["a_done"][1] and "100/100" in states["a_done"][1]
  assert "50/100" in states["d_running"][1] and "0:00:5" in states["d_running"][1]
  assert f"process {dead.pid} ended while the point ran" in states["e_killed"][1]
  assert "not started" in states["c_never"][1]
  assert "queued as job 77_6" in states["g_queued"][1]
  # ETA: the running point's own pace (50 s more) and two pending points at
  # the mean of the done ones (100 s each), two at a time: 250 / 2 s.
  assert lines[-2].startswith("total: 7 points: 1 done, 1 running, 2 pending, 1 failed, 2 stopped;")
  assert lines[-2].endswith("ETA 0:02:05")
  assert lines[-1].startswith("stopped points resume")


# --------------------------------------------------------------------------
# A fake Slurm: the sbatch script, the job records, --status, --cancel

FAKE_SLURM = {
  "sbatch": """[ -f "$FAKE_SLURM/sbatch_error" ] && { cat "$FAKE_SLURM/sbatch_error" >&2; exit 1; }
                 n=$(cat "$FAKE_SLURM/next" 2>/dev/null || echo 4242)
                 echo $((n + 1)) > "$FAKE_SLURM/next"
                 cp "$1" "$FAKE_SLURM/sbatch_$n.sh"
                 echo "Submitted batch job $n" """,
  "srun": "exit 0",
  "sacct": """echo "$@" >> "$FAKE_SLURM/sacct_calls.txt"
                [ -f "$FAKE_SLURM/sacct_down" ] && {
                  echo "sacct: error: Problem talking to the database: Connection refused" >&2
                  exit 1; }
                echo "JobID|State|NodeList"; cat "$FAKE_SLURM/sacct.txt" 2>/dev/null; true""",
  "squeue": 'cat "$FAKE_SLURM/squeue.txt" 2>/dev/null; true',
  "scancel": """[ -f "$FAKE_SLURM/scancel_error" ] && {
                  cat "$FAKE_SLURM/scancel_error" >&2; exit 1; }
                  echo "$@" >> "$FAKE_SLURM/scancel.txt" """,
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for name, body in FAKE_SLURM.items():
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body).strip() + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
  monkeypatch.setenv("FAKE_SLURM", str(tmp_path))
  monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
  monkeypatch.setattr(slurm_job, "NOT_SHARED", ())  # tmp_path is in /tmp
  return tmp_path


def test_fake_slurm_array_status_cancel(fake_slurm, tmp_path):
  cfg = tmp_path / "cfg.py"
  cfg.write_text(
    SWEEP_CONFIG + '\nSLURM = {"gpus_per_point": 2, "timeout_min": 45, "slurm_partition": "cpu"}\n'
  )
  workdir, lines = str(tmp_path / "S"), []
  flags = {
    "slurm_partition": "gpu",
    "timeout_min": 30,
    "tasks_per_node": 2,
    "cpus_per_point": 8,
    "array_parallelism": 1,
    "slurm_account": "acct",
    "slurm_qos": "high",
    "slurm_extra": ["mem=32G", "constraint=a100"],
  }
  assert slurm.run_sweep(f"{cfg}:two", workdir, flags=flags, print_fn=lines.append) is None
  script = (fake_slurm / "sbatch_4242.sh").read_text()
  for option in (
    "--array=0-1%1",
    "--partition=gpu",
    "--time=30",
    "--gpus-per-node=2",
    "--ntasks-per-node=2",
    "--cpus-per-task=4",
    "--nodes=1",
    "--account=acct",
    "--qos=high",
    "--mem=32G",
    "--constraint=a100",
    "--signal=USR2@90",
    "--job-name=sweep_cfg",
  ):
    assert f"#SBATCH {option}\n" in script
  assert "srun" in script and "submitit.core._submit" in script
  assert "submitted 2 point(s) as job array 4242 (cluster slurm)" in lines[1]
  assert any("squeue --me; sacct -j 4242" in line for line in lines)
  points = [os.path.join(workdir, s) for s in ("hidden_size=8", "hidden_size=12")]
  assert [read_json(os.path.join(p, JOB_FILE))["job_id"] for p in points] == ["4242_0", "4242_1"]
  # submitit pickled the job: small, and loading it imports no jax
  pickled = os.path.join(workdir, "slurm", "4242_0_submitted.pkl")
  assert os.path.getsize(pickled) < 4000
  probe = subprocess.run(
    [
      sys.executable,
      "-c",
      "import pickle, sys; d = pickle.load(open(sys.argv[1], "
      "'rb')); print(d.function.point.slug, 'jax' in sys.modules)",
      pickled,
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    check=True,
  )
  assert probe.stdout.split() == ["hidden_size=8", "False"]

  (fake_slurm / "sacct.txt").write_text("4242_0|RUNNING\n4242_1|PENDING\n")
  states = _states(status.status_lines(workdir, slurm.job_states(workdir)))
  assert states["hidden_size=8"][0] == "running"
  assert states["hidden_size=12"][0] == "pending" and "job 4242_1" in states["hidden_size=12"][1]
  again = []
  slurm.run_sweep(f"{cfg}:two", workdir, flags=flags, print_fn=again.append)
  assert "0 already finished, 2 running or queued, 0 to submit" in again[0]
  assert not (fake_slurm / "sbatch_4243.sh").exists()

  assert slurm.cancel(workdir, print_fn=lines.append) == 2
  assert (fake_slurm / "scancel.txt").read_text().split() == ["4242_0", "4242_1"]
  assert all(read_json(os.path.join(p, JOB_FILE))["cancelled"] for p in points)
  (fake_slurm / "sacct.txt").write_text("4242_0|CANCELLED by 1\n4242_1|CANCELLED by 1\n")
  states = _states(status.status_lines(workdir, slurm.job_states(workdir)))
  assert states["hidden_size=8"][0] == "stopped"
  assert "ended before the point started" in states["hidden_size=8"][1]
  slurm.run_sweep(f"{cfg}:two", workdir, flags=flags, print_fn=again.append)
  assert (fake_slurm / "sbatch_4243.sh").exists()  # the next command resubmits


def _submit_two(fake_slurm, tmp_path, **flags):
  cfg = tmp_path / "cfg.py"
  cfg.write_text(SWEEP_CONFIG)
  workdir, lines = str(tmp_path / "S"), []
  slurm.run_sweep(f"{cfg}:two", workdir, flags=flags, print_fn=lines.append)
  return f"{cfg}:two", workdir, lines


def test_cpu_points_ask_for_no_gpus_and_get_the_notice(fake_slurm, tmp_path):
  _submit_two(fake_slurm, tmp_path)
  script = (fake_slurm / "sbatch_4242.sh").read_text()
  assert "--gpus-per-node" not in script and "#SBATCH --signal=USR2@90\n" in script
  assert slurm.STOP_TIMEOUT_S < slurm.SIGNAL_DELAY_S == 90
  ex = slurm.executor_for(
    SimpleNamespace(config_path="c.py"),
    str(tmp_path),
    slurm_job.merge_options({}, {}, "local"),
  )
  assert ex.parameters.get("signal_delay_s") == 90  # not submitit's 30
  assert "gpus_per_node" not in ex.parameters
  assert ex.max_num_timeout == slurm.MAX_NUM_TIMEOUT == 3


def test_unknown_job_state_is_alive_never_resubmitted_and_cancelled(fake_slurm, tmp_path):
  spec, workdir, _ = _submit_two(fake_slurm, tmp_path)
  (fake_slurm / "sacct_down").write_text("")  # sacct fails; squeue knows one job
  (fake_slurm / "squeue.txt").write_text("4242_0|RUNNING\n")
  lines = []
  slurm.run_sweep(spec, workdir, print_fn=lines.append)
  assert "0 already finished, 2 running or queued, 0 to submit" in lines[0]
  assert lines[1] == (
    "hidden_size=12: the state of job 4242_1 is unknown (sacct "
    "and squeue give no answer): not resubmitting it"
  )
  assert not (fake_slurm / "sbatch_4243.sh").exists()
  assert (fake_slurm / "sacct_calls.txt").read_text().splitlines()[-1] == (
    "-o JobID,State,NodeList --parsable2 -j 4242"  # submitit's watcher asks
  )
  # --cancel: scancel every job not known to have ended, the unknown one too
  (fake_slurm / "scancel_error").write_text(
    "scancel: error: Kill job error on job id 4242_1: Access/permission denied\n"
  )
  with pytest.raises(
    slurm.SweepError,
    match=r"^scancel 4242_0 4242_1 failed \(exit 1; its message is above\); "
    r"nothing was marked cancelled$",
  ):
    slurm.cancel(workdir, print_fn=lines.append)
  points = [os.path.join(workdir, s) for s in ("hidden_size=8", "hidden_size=12")]
  assert not any(read_json(os.path.join(p, JOB_FILE))["cancelled"] for p in points)
  (fake_slurm / "scancel_error").unlink()
  (fake_slurm / "bin" / "scancel").rename(fake_slurm / "scancel.off")
  with pytest.raises(slurm.SweepError, match="scancel is not on PATH"):
    slurm.cancel(workdir, print_fn=lines.append)
  assert not any(read_json(os.path.join(p, JOB_FILE))["cancelled"] for p in points)
  (fake_slurm / "scancel.off").rename(fake_slurm / "bin" / "scancel")
  assert slurm.cancel(workdir, print_fn=lines.append) == 2
  assert (fake_slurm / "scancel.txt").read_text().split() == ["4242_0", "4242_1"]
  assert all(read_json(os.path.join(p, JOB_FILE))["cancelled"] for p in points)


def test_wait_polls_sacct_until_a_suspended_job_ends(fake_slurm, tmp_path, monkeypatch):
  """A state submitit's watcher takes for finished (SUSPENDED) and then never
  asks sacct about again: the sweep asks sacct itself at every poll."""
  cfg = tmp_path / "cfg.py"
  cfg.write_text(SWEEP_CONFIG)
  workdir, lines, polls, seen = str(tmp_path / "S"), [], [], []
  (fake_slurm / "sacct.txt").write_text("4242_[0-1%2]|SUSPENDED\n")

  real_sleep = time.sleep

  def sleep(seconds):
    if seconds != 1234:  # not the sweep's poll (subprocess's own waits)
      return real_sleep(seconds)
    polls.append(1)
    if len(polls) == 2:  # what the first poll read: 4242_[0-1%2] is both jobs
      seen.extend(slurm.job_state({"cluster": "slurm", "job_id": f"4242_{k}"}) for k in (0, 1))
    if len(polls) == 3:  # both jobs end, each point failed on its own
      (fake_slurm / "sacct.txt").write_text("4242_0|FAILED\n4242_1|FAILED\n")
      for k, slug in enumerate(("hidden_size=8", "hidden_size=12")):
        (tmp_path / "S" / slug / STATUS_FILE).write_text(
          json.dumps(
            {
              "status": "failed",
              "returncode": 3,
              "job_id": f"4242_{k}",
              "log_tail": ["error: the loss became nan"],
            }
          )
        )

  monkeypatch.setattr(slurm.time, "sleep", sleep)
  launch = slurm.Launch(wait=True, poll_s=1234)
  statuses = slurm.run_sweep(f"{cfg}:two", workdir, launch=launch, print_fn=lines.append)
  assert [s["status"] for s in statuses] == ["failed", "failed"]
  assert len(polls) == 3 and seen == ["pending", "pending"]
  assert (fake_slurm / "sacct_calls.txt").read_text().count("-j 4242") == 3
  assert not (fake_slurm / "sbatch_4243.sh").exists()


def test_rejected_sbatch_is_one_line_and_leaves_no_sweep(fake_slurm, tmp_path):
  (fake_slurm / "sbatch_error").write_text(
    "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
  )
  cfg = tmp_path / "cfg.py"
  cfg.write_text(SWEEP_CONFIG)
  workdir = tmp_path / "S"
  with pytest.raises(slurm.SweepError) as e:
    slurm.run_sweep(
      f"{cfg}:two", str(workdir), flags={"slurm_partition": "nope"}, print_fn=lambda line: None
    )
  assert str(e.value) == (
    "sbatch refused the job array: sbatch: error: Batch job "
    "submission failed: Invalid partition name specified; "
    "nothing was submitted, the same command can run again"
  )
  assert not workdir.exists()
  from attention_jax.errors import EXIT_CODES

  assert dict(EXIT_CODES)[slurm.SweepError] == 2


def test_local_cluster_gpus(sweep_config, monkeypatch, tmp_path):
  """submitit's local executor sets CUDA_VISIBLE_DEVICES of every job to
  0..n-1 (to "" without GPUs): a point gets the sweep command's own setting
  without GPUs, its own GPUs with them."""
  from attention_jax.sweeps.point import Point, Sweep
  from attention_jax.sweeps.slurm_job import PointJob

  p = Point({}, "a", str(tmp_path / "a"))
  sweep = Sweep("c.py", None, [p], (), {}, "t")
  task = SimpleNamespace(cluster="local", num_tasks=1, num_nodes=1, local_rank=0, global_rank=0)
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # the sweep command's
  cpu, gpu = PointJob(sweep, p), PointJob(sweep, p, local_gpus=["5"])
  monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
  unset = PointJob(sweep, p)
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # what submitit sets
  assert cpu.env(task)["CUDA_VISIBLE_DEVICES"] == "3,5"
  assert gpu.env(task)["CUDA_VISIBLE_DEVICES"] == "5"
  assert "CUDA_VISIBLE_DEVICES" not in unset.env(task)
  # each point its own GPUs from the pool, less those of running jobs
  monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
  monkeypatch.setattr(runner, "gpu_ids", lambda: ["0", "1", "2", "3"])
  o = slurm_job.merge_options({"gpus_per_point": 2, "array_parallelism": 2}, {}, "local")
  assert slurm._local_gpus([p, p], o, set()) == [["0", "1"], ["2", "3"]]
  assert slurm._local_gpus([p], o, {"0", "2"}) == [["1", "3"]]
  with pytest.raises(slurm.SweepError, match="2 point.s. need 4 GPU.s., 3 free"):
    slurm._local_gpus([p, p], o, {"1"})
  monkeypatch.setattr(runner, "gpu_ids", lambda: ["0", "1", "2"])
  with pytest.raises(
    slurm.SweepError,
    match=r"^--gpus_per_point 2 × "
    r"--array_parallelism 2 needs 4 GPU\(s\); this machine has 3$",
  ):
    slurm.run_sweep(
      sweep_config + ":two",
      str(tmp_path / "S"),
      cluster="local",
      flags={"gpus_per_point": 2, "array_parallelism": 2},
    )
  assert not (tmp_path / "S").exists()


def test_local_cancel_stops_the_run_then_its_controller(tmp_path):
  """--cancel on the local cluster: SIGTERM to the point's ``experiments.run``
  (here a process that exits 75 on SIGTERM, as the run does after saving),
  waited for, then SIGINT to submitit's controller; while the task that runs
  the point lives, the point is running even if its controller has ended."""
  run = subprocess.Popen(
    [
      sys.executable,
      "-c",
      "import signal, sys, time; "
      "signal.signal(signal.SIGTERM, lambda *a: sys.exit(75)); "
      "print('ready', flush=True); time.sleep(60)",
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  # A stand-in for submitit's controller, which ends on SIGINT (its own
  # handler: pytest may run with SIGINT ignored, e.g. started by `nohup … &`).
  controller = subprocess.Popen(
    [
      sys.executable,
      "-c",
      "import signal, sys, time; "
      "signal.signal(signal.SIGINT, lambda *a: sys.exit(130)); "
      "print('ready', flush=True); time.sleep(60)",
      "submitit",
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  assert run.stdout.readline() == "ready\n"
  assert controller.stdout.readline() == "ready\n"
  point = tmp_path / "a"
  point.mkdir()
  (point / JOB_FILE).write_text(
    json.dumps({"job_id": str(controller.pid), "cluster": "local", "cancelled": False})
  )
  (point / STATUS_FILE).write_text(
    json.dumps(
      {
        "status": "running",
        "job_id": str(controller.pid),
        "started": time.time(),
        "host": socket.gethostname(),
        "pid": run.pid,
        "run_pid": run.pid,
      }
    )
  )
  (tmp_path / "sweep.json").write_text(
    json.dumps(
      {
        "title": "t",
        "launcher": {"name": "slurm", "cluster": "local"},
        "points": [{"slug": "a", "overrides": {}, "steps": 6}],
      }
    )
  )
  dead = {"job_id": "999999999", "cluster": "local"}
  assert slurm.job_state(dead) == "ended"
  assert status.point_state(str(point), "a", 6, lambda r: "ended").state == "running"
  lines = []
  assert slurm.cancel(str(tmp_path), print_fn=lines.append) == 1
  assert run.wait(timeout=5) == 75 and controller.wait(timeout=5) != 0
  assert lines == [
    "cancelled 1 job(s): a; running points got SIGTERM and ended (a "
    "training run saves its step first); the sweep command "
    "resubmits them"
  ]
  assert read_json(str(point / JOB_FILE))["cancelled"]


def test_a_child_started_while_stopping_is_stopped(tmp_path):
  """stop_children between run_command's check and its Popen: the new child
  is terminated at once instead of running on unseen."""
  from attention_jax.sweeps import point as point_lib

  point_lib.STOPPING.set()  # as if stop_children ran just before Popen
  try:
    with open(tmp_path / "log", "w") as log:
      rc = point_lib.run_command(
        [sys.executable, "-c", "import time; time.sleep(60)"], str(tmp_path), dict(os.environ), log
      )
  finally:
    point_lib.STOPPING.clear()
  assert rc == -signal.SIGTERM


def test_eta_counts_this_attempts_steps_and_all_attempts_seconds(tmp_path):
  now = time.time()
  points = {
    "done": {"status": "done", "returncode": 0, "seconds": 30.0, "total_seconds": 100.0},
    "resumed": {
      "status": "running",
      "started": now - 50,
      "start_step": 40,
      "host": socket.gethostname(),
      "pid": os.getpid(),
    },
  }
  for slug, st in points.items():
    os.makedirs(tmp_path / slug)
    (tmp_path / slug / STATUS_FILE).write_text(json.dumps(st))
  (tmp_path / "resumed" / "metrics.jsonl").write_text('{"step": 50}\n')
  (tmp_path / "sweep.json").write_text(
    json.dumps(
      {
        "title": "t",
        "launcher": {"name": "local", "jobs": 2},
        "points": [{"slug": s, "overrides": {}, "steps": 100} for s in points],
      }
    )
  )
  lines = status.status_lines(str(tmp_path))
  assert "0:01:40" in _states(lines)["done"][1]  # 100 s over both attempts
  # 10 steps in this attempt's 50 s: 50 steps left take 250 s (not 50 s, as
  # 50 steps in 50 s would say)
  assert lines[-1].endswith("ETA 0:04:10"), lines[-1]


# --------------------------------------------------------------------------
# Options and errors


def test_options_flags_over_config_over_defaults():
  o = slurm_job.merge_options(
    {"timeout_min": 30},
    {"timeout_min": 45, "gpus_per_point": 2, "slurm_partition": "gpu"},
    "slurm",
    "c.py",
  )
  assert (o.timeout_min, o.gpus_per_point, o.slurm_partition) == (30, 2, "gpu")
  local = slurm_job.merge_options({}, {"slurm_partition": "gpu", "nodes_per_point": 2}, "local")
  assert local.slurm_partition is None and local.nodes_per_point == 1
  assert (
    local.parallel == 1
    and slurm_job.merge_options({"array_parallelism": 3}, {}, "local").parallel == 3
  )
  for flags, config, cluster, message in [
    ({}, {"gpus": 1}, "slurm", r"c.py: SLURM key 'gpus' unknown"),
    ({"timeout_min": 0}, {}, "slurm", r"--timeout_min is 0: expected an integer >= 1"),
    (
      {"timeout_min": 1},
      {},
      "local",
      r"--timeout_min is 1: the points get their "
      r"save signal 90 s before the time limit; expected >= 2",
    ),
    ({}, {"tasks_per_node": "2"}, "slurm", r"c.py: SLURM\['tasks_per_node'\] is '2'"),
    ({"gpus_per_point": 3, "tasks_per_node": 2}, {}, "slurm", "does not split evenly"),
    ({"cpus_per_point": 3, "tasks_per_node": 2}, {}, "slurm", "does not split evenly"),
    (
      {"slurm_partition": "gpu"},
      {},
      "local",
      "--slurm_partition does nothing with --cluster local",
    ),
    ({"gpus_per_point": 1}, {}, "debug", "--gpus_per_point does nothing with --cluster debug"),
    ({"slurm_extra": ["mem"]}, {}, "slurm", "--slurm_extra 'mem': expected KEY=VALUE"),
    ({}, {}, "pbs", "--cluster 'pbs': expected one of slurm, local, debug"),
  ]:
    with pytest.raises(slurm.SweepError, match=message):
      slurm_job.merge_options(flags, config, cluster, "c.py")


CLI_ERRORS = [
  (["--launcher", "slurm"], "no Slurm on this machine (sbatch is not on PATH)"),
  (
    ["--launcher", "slurm", "--cluster", "slurm"],
    "is under /tmp, which the cluster's nodes do not share",
  ),
  (
    ["--launcher", "slurm", "--cluster", "local", "--nodes_per_point", "2"],
    "--nodes_per_point does nothing with --cluster local",
  ),
  (
    ["--launcher", "slurm", "--cluster", "local", "--max_retries", "1"],
    "--max_retries needs --wait",
  ),
  (["--launcher", "slurm", "--cluster", "local", "--jobs", "2"], "--jobs is for --launcher local"),
  (["--wait"], "--wait: for --launcher slurm only"),
]


@pytest.mark.parametrize("args,message", CLI_ERRORS, ids=lambda a: str(a)[:40])
def test_cli_errors_are_one_line_before_anything_is_written(
  sweep_config, tmp_path, args, message, fake_slurm
):
  if "no Slurm" in message:  # PATH without the fake Slurm
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))
  else:
    env = dict(os.environ)
  workdir = tmp_path / "S"
  r = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.sweep",
      f"--config={sweep_config}",
      f"--workdir={workdir}",
      *args,
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    env=env,
  )
  assert r.returncode == 2, r.stderr
  assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
  assert message in r.stderr
  assert not workdir.exists()


def test_a_sweep_started_ignoring_sigint_gives_local_jobs_a_working_sigint():
  """submitit stops local jobs with SIGINT; a sweep command started in the
  background ignores it and its children would inherit that. Before the local
  executor starts anything, SIGINT is handled again, so children get it back."""
  probe = [
    sys.executable,
    "-c",
    "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)",
  ]
  before = signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    assert subprocess.run(probe, capture_output=True, text=True).stdout == "True\n"
    slurm._undo_ignored_sigint()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert subprocess.run(probe, capture_output=True, text=True).stdout == "False\n"
  finally:
    signal.signal(signal.SIGINT, before)
