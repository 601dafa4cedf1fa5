"""Faults, bad input and resume: every row of issue #9 is a test here.

Faults are real: the kills, SIGTERM and the full disk happen in a real
``python -m experiments.run`` process, triggered at a chosen step by the
``ATTENTION_JAX_FAULT`` hook (``attention_jax/faults.py``); checkpoints are
corrupted by flipping and truncating bytes on disk. Every resumed run is
compared leaf by leaf, bit for bit, with one uninterrupted run of the same
tiny config (``reference``), and its ``metrics.jsonl`` row by row.

Subprocesses share a persistent JAX compilation cache (a session temporary
directory), so only the first one compiles.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import ROOT, snapshot, tiny_config

from attention_jax import checkpoint, faults, host_memory, train, workdir_lock, writers
from attention_jax import config as config_lib
from attention_jax import step as step_lib
from attention_jax import workdir as workdir_lib
from attention_jax.errors import NonFiniteError, Preempted, ResumeRefused

# 12 steps, checkpoints at 4, 8, 12 (all kept), train rows at 5, 10, 12.
TINY = {
  "train.steps": 12,
  "checkpoint.every_steps": 4,
  "train.log_every_steps": 5,
  "eval.every_steps": 12,
  "model.hidden_size": 16,
  "model.embed_dim": 8,
  "data.eval_examples": 32,
  "train.batch_size": 8,
  "train.warmup_steps": 2,
}


def tiny(**overrides):
  return tiny_config(**{**TINY, **overrides})


# --------------------------------------------------------------------------
# Shared fixtures and helpers


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """One uninterrupted run (in this process); its workdir is read-only."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  final = train.train_and_evaluate(tiny(), workdir)
  return workdir, final


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
  """``cli(workdir, fault=None, *flags)`` runs ``experiments.run`` on the tiny
  config in a fresh process and returns the CompletedProcess."""
  base = tmp_path_factory.mktemp("cli")
  config_file = base / "tiny_config.py"
  config_file.write_text(
    "import json\nimport ml_collections\n\n\ndef get_config(arg=None):\n"
    f"  return ml_collections.ConfigDict(json.loads({config_lib.to_json(tiny())!r}))\n"
  )
  env = {k: v for k, v in os.environ.items() if k != faults.ENV}
  for name in (host_memory.CHOICE, host_memory.RESTARTED, *host_memory.USER_SETTINGS):
    env.pop(name, None)  # the default malloc choice (checked below)
  env.update(
    JAX_COMPILATION_CACHE_DIR=str(base / "jax_cache"),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )

  def run(workdir, fault=None, *flags):
    e = dict(env, **({faults.ENV: fault} if fault else {}))
    return subprocess.run(
      [
        sys.executable,
        "-m",
        "experiments.run",
        f"--config={config_file}",
        f"--workdir={workdir}",
        *flags,
      ],
      cwd=ROOT,
      env=e,
      capture_output=True,
      text=True,
      timeout=600,
    )

  return run


def error_line(proc) -> str:
  """The one ``error: …`` line of a failed run. Not simply the last line:
  after a failed save, orbax's threads print "Event loop is closed" tracebacks
  around it while the interpreter shuts down."""
  found = re.findall(r"error: [^\n]*", proc.stderr)
  assert len(found) == 1, proc.stderr[-3000:]
  return found[0]


def committed(workdir) -> list[int]:
  return checkpoint.Checkpointer(os.path.join(workdir, "checkpoints")).committed_steps()


def state_at(workdir, step=None):
  run = workdir_lib.load(workdir, step)
  return run.state


def assert_same_state(a, b):
  """Step, parameters, optimizer state and RNG equal bit for bit."""
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb) > 0
  for x, y in zip(la, lb, strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def metrics_rows(workdir):
  return [
    {k: v for k, v in r.items() if not k.endswith("per_sec")} for r in writers.read_metrics(workdir)
  ]


def copy_workdir(src, dst) -> str:
  shutil.copytree(src, dst)
  return str(dst)


def largest_data_file(workdir, step) -> str:
  d = os.path.join(workdir, "checkpoints", str(step), "state")
  files = [os.path.join(r, n) for r, _, ns in os.walk(d) for n in ns]
  return max(files, key=os.path.getsize)


# --------------------------------------------------------------------------
# Kills, preemption, full disk (real processes)


def test_sigkill_during_training_resumes_bit_exact(reference, cli, tmp_path):
  ref_dir, _ = reference
  w = str(tmp_path / "w")
  # Synchronous saves, so that step 4 is surely on disk when step 6 is killed.
  p = cli(w, "kill_at_step:6", "--config.checkpoint.async_save=false")
  assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
  assert committed(w) == [4]
  assert [r["step"] for r in writers.read_metrics(w)] == [5]  # written, then lost
  p = cli(w)
  assert p.returncode == 0, p.stderr[-2000:]
  assert "resumed from checkpoint at step 4" in p.stderr
  assert_same_state(state_at(w), state_at(ref_dir))
  assert metrics_rows(w) == metrics_rows(ref_dir)


def test_sigkill_during_async_save(reference, cli, tmp_path):
  ref_dir, _ = reference
  w = str(tmp_path / "w")
  # Killed in the save thread after step 8's files are written, before commit.
  p = cli(w, "kill_in_save:8")
  assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
  ckpt = checkpoint.Checkpointer(os.path.join(w, "checkpoints"))
  assert ckpt.committed_steps() == [4]
  assert ckpt.uncommitted() == ["8" + checkpoint.TMP_SUFFIX]
  assert_same_state(state_at(w), state_at(ref_dir, 4))  # the previous step restores
  p = cli(w)
  assert p.returncode == 0, p.stderr[-2000:]
  assert "removed half-written save" in p.stderr
  assert "resumed from checkpoint at step 4" in p.stderr
  assert ckpt.committed_steps() == [4, 8, 12] and ckpt.uncommitted() == []
  ckpt.verify(8)  # step 8 saved again
  assert_same_state(state_at(w, 8), state_at(ref_dir, 8))
  assert_same_state(state_at(w), state_at(ref_dir))


def test_sigterm_saves_the_step_and_exits_75(reference, cli, tmp_path):
  ref_dir, _ = reference
  w = str(tmp_path / "w")
  p = cli(w, "sigterm_at_step:7")
  ckpt_dir = os.path.join(w, "checkpoints")
  assert p.returncode == 75, p.stderr[-2000:]
  assert error_line(p) == (
    f"error: stopped by SIGTERM after step 7: checkpoint step 7 "
    f"saved in {ckpt_dir}; run the same command again to resume"
  )
  assert committed(w) == [4, 7]
  p = cli(w)
  assert p.returncode == 0, p.stderr[-2000:]
  assert "resumed from checkpoint at step 7" in p.stderr  # no step lost
  assert_same_state(state_at(w), state_at(ref_dir))
  # Steps 6 and 7 were measured before the SIGTERM: the row at step 10 still
  # averages 6..10, as in the uninterrupted run.
  assert metrics_rows(w) == metrics_rows(ref_dir)


def test_disk_full_during_save_names_path_and_keeps_previous(reference, cli, tmp_path):
  ref_dir, _ = reference
  w = str(tmp_path / "w")
  # Files may not grow past 2 KiB from step 12's save on; keep only 1 step, so
  # a manager that deleted the old step before committing the new would fail.
  p = cli(w, "fsize_limit_at_save:12:2048", "--config.checkpoint.max_to_keep=1")
  assert p.returncode == 4, p.stderr[-2000:]
  ckpt_dir = os.path.join(w, "checkpoints")
  assert re.search(
    re.escape(f"error: cannot write checkpoint step 12 to {ckpt_dir}/12: ")
    + r"[^\n]*File too large[^\n]*"
    + re.escape(f"; older steps in {ckpt_dir} are intact"),
    p.stderr,
  ), p.stderr[-3000:]
  ckpt = checkpoint.Checkpointer(os.path.join(w, "checkpoints"))
  assert ckpt.committed_steps() == [8]
  ckpt.verify(8)
  assert_same_state(state_at(w), state_at(ref_dir, 8))


def test_fresh_run_in_another_process_is_bit_identical(reference, cli, tmp_path):
  ref_dir, _ = reference
  w = str(tmp_path / "w")
  p = cli(w)
  assert p.returncode == 0, p.stderr[-2000:]
  for step in (4, 8, 12):
    assert_same_state(state_at(w, step), state_at(ref_dir, step))
  assert metrics_rows(w) == metrics_rows(ref_dir)
  # the entry point's malloc choice took effect, through at most one restart
  # before any work (one start recorded)
  (record,) = json.loads((Path(w) / "env.json").read_text())
  why_not = host_memory._why_no_hugepages()
  assert record["host_malloc"] == (
    f"glibc defaults ({why_not})" if why_not else host_memory.HUGEPAGES
  )


# --------------------------------------------------------------------------
# Corrupt checkpoints


def test_corrupt_checkpoint_detected_then_fallback_or_stop(reference, cli, tmp_path):
  ref_dir, _ = reference
  w = copy_workdir(ref_dir, tmp_path / "w")
  ckpt = checkpoint.Checkpointer(os.path.join(w, "checkpoints"))
  flipped = largest_data_file(w, 12)
  with open(flipped, "r+b") as f:  # flip one byte in the middle
    f.seek(os.path.getsize(flipped) // 2)
    b = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([b[0] ^ 0xFF]))
  truncated = largest_data_file(w, 8)
  size = os.path.getsize(truncated)
  with open(truncated, "r+b") as f:
    f.truncate(size - 7)
  with pytest.raises(
    checkpoint.CorruptCheckpointError,
    match=re.escape(f"checkpoint step 12 is corrupt: {flipped} has changed bytes"),
  ):
    ckpt.verify(12)
  with pytest.raises(
    checkpoint.CorruptCheckpointError,
    match=re.escape(
      f"checkpoint step 8 is corrupt: {truncated} has {size - 7} bytes, {size} when saved"
    ),
  ):
    ckpt.verify(8)
  step, bad = ckpt.select("fallback")
  assert step == 4 and [e.step for e in bad] == [12, 8]

  before = snapshot(w)
  p = cli(w, None, "--config.checkpoint.on_corrupt=stop")
  assert p.returncode == 4, p.stderr[-2000:]
  assert error_line(p).startswith("error: checkpoint step 12 is corrupt: ")
  assert "on_corrupt=fallback" in error_line(p)
  assert snapshot(w) == before

  p = cli(w)  # on_corrupt=fallback (the default): resume from step 4
  assert p.returncode == 0, p.stderr[-2000:]
  assert "resumed from checkpoint at step 4" in p.stderr
  quarantine = sorted(os.listdir(os.path.join(w, checkpoint.QUARANTINE_NAME)))
  assert [q.split("-")[0] for q in quarantine] == ["12", "8"]
  assert ckpt.committed_steps() == [4, 8, 12]
  assert_same_state(state_at(w), state_at(ref_dir))


def test_unreadable_integrity_record_is_corrupt(reference, tmp_path):
  w = copy_workdir(reference[0], tmp_path / "w")
  path = os.path.join(w, "checkpoints", "12", checkpoint.INTEGRITY_NAME)
  with open(path, "w") as f:
    f.write('{"files": ')
  ckpt = checkpoint.Checkpointer(os.path.join(w, "checkpoints"))
  with pytest.raises(
    checkpoint.CorruptCheckpointError, match="step 12 is corrupt: its record .* is unreadable"
  ):
    ckpt.verify(12)
  assert ckpt.select("fallback")[0] == 8


# --------------------------------------------------------------------------
# Resuming with another config


@pytest.mark.parametrize(
  "overrides,key,param",
  [
    (
      {"model.hidden_size": 24},
      "model.hidden_size: 16 -> 24",
      "params/decoder/input_kernel (24, 48) in checkpoint, (32, 72) now",
    ),
    (
      {"data.vocab_size": 9},
      "data.vocab_size: 6 -> 9",
      "params/readout/out/bias (10,) in checkpoint, (13,) now",
    ),
  ],
)
def test_resume_with_other_shapes_is_refused_untouched(reference, tmp_path, overrides, key, param):
  w = copy_workdir(reference[0], tmp_path / "w")
  before = snapshot(w)
  for allow in (False, True):
    with pytest.raises(ResumeRefused) as e:
      train.train_and_evaluate(tiny(**overrides), w, allow_config_change=allow)
    msg = str(e.value)
    assert msg.startswith(f"cannot resume {w} from step 12: the config changes the shapes of ")
    assert param in msg and key in msg and "\n" not in msg
    assert snapshot(w) == before


def test_resume_with_other_hyperparameters(reference, cli, tmp_path):
  ref_dir, final = reference
  w = copy_workdir(ref_dir, tmp_path / "w")
  before = snapshot(w)
  changed = tiny(**{"train.learning_rate": 0.01, "model.dropout": 0.1})
  with pytest.raises(
    ResumeRefused,
    match=re.escape(
      "the config differs from the run's config.json in model.dropout: 0.0 -> 0.1, "
      "train.learning_rate: 0.003 -> 0.01; pass --allow_config_change"
    ),
  ):
    train.train_and_evaluate(changed, w)
  # With cosine decay, train.steps sets every step's learning rate: refused.
  with pytest.raises(ResumeRefused, match=re.escape("train.steps: 12 -> 20")):
    train.train_and_evaluate(tiny(**{"train.steps": 20}), w)
  assert snapshot(w) == before
  # Logging, evaluation and checkpoint settings may change freely.
  free = tiny(
    **{
      "eval.batch_size": 16,
      "train.log_every_steps": 3,
      "checkpoint.max_to_keep": 5,
      "train.skip_nonfinite": True,
    }
  )
  assert train.train_and_evaluate(free, w) == {"step": 12, "split": "eval", **final}
  # The flag on the command line: refused without, resumed (finished) with.
  p = cli(w, None, "--config.train.learning_rate=0.01")
  assert p.returncode == 2 and "train.learning_rate: 0.003 -> 0.01" in error_line(p)
  p = cli(w, None, "--config.train.learning_rate=0.01", "--allow_config_change")
  assert p.returncode == 0, p.stderr[-2000:]
  assert "training already finished" in p.stderr
  with open(os.path.join(w, "config_changes.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records] == [12, 12]  # the free changes, then these
  assert records[0]["changes"]["eval.batch_size"] == [32, 16]
  assert records[1]["changes"]["train.learning_rate"] == [0.003, 0.01]
  with open(os.path.join(w, "config.json")) as f:
    assert json.load(f)["train"]["learning_rate"] == 0.01


def test_which_changes_need_the_flag():
  old = json.loads(config_lib.to_json(tiny(**{"train.schedule": "constant"})))
  new = tiny(
    **{
      "train.schedule": "constant",
      "train.steps": 30,
      "eval.every_steps": 7,
      "train.label_smoothing": 0.1,
    }
  )
  changes = workdir_lib.config_changes(old, new)
  assert [k for k, _, _ in changes] == ["eval.every_steps", "train.label_smoothing", "train.steps"]
  free = {k: workdir_lib.is_resume_free(k, old, new) for k, _, _ in changes}
  assert free == {
    "eval.every_steps": True,
    "train.label_smoothing": False,
    "train.steps": True,
  }  # constant schedule: steps may grow
  cosine = json.loads(config_lib.to_json(tiny()))
  assert not workdir_lib.is_resume_free("train.steps", cosine, tiny(**{"train.steps": 30}))
  # A key added to base_config after the run was written counts as its default.
  del old["train"]["skip_nonfinite"]
  assert workdir_lib.config_changes(old, tiny(**{"train.schedule": "constant"})) == []


def test_unreadable_run_config_is_refused(reference, tmp_path):
  w = copy_workdir(reference[0], tmp_path / "w")
  path = os.path.join(w, "config.json")
  with open(path, "w") as f:
    f.write("{not json")
  with pytest.raises(
    ResumeRefused, match=re.escape(f"cannot resume {w}: its config {path} is unreadable")
  ):
    train.train_and_evaluate(tiny(), w)
  assert train.train_and_evaluate(tiny(), w, allow_config_change=True)["step"] == 12


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / "file"
  path.write_text("x")
  with pytest.raises(config_lib.ConfigError, match="exists and is not a directory"):
    train.train_and_evaluate(tiny(), str(path))


# --------------------------------------------------------------------------
# Non-finite loss and gradients


def test_nonfinite_stops_naming_step_and_last_good_checkpoint(reference, tmp_path, monkeypatch):
  ref_dir, _ = reference
  w = str(tmp_path / "w")
  monkeypatch.setenv(faults.ENV, "nonfinite_at_step:6")
  with pytest.raises(
    NonFiniteError,
    match=re.escape(
      "loss became nan, grad_norm became nan, update_norm became nan, param_norm "
      f"became nan at step 6; last good checkpoint: step 4 in {w}/checkpoints"
    ),
  ):
    train.train_and_evaluate(tiny(), w)
  assert committed(w) == [4]  # step 8 (non-finite) was never saved
  assert_same_state(state_at(w), state_at(ref_dir, 4))


def test_skip_nonfinite_step_keeps_state():
  config = tiny(**{"train.skip_nonfinite": True, "train.warmup_steps": 0})
  run = workdir_lib.make_run(config)

  def make(objective):
    return jax.jit(step_lib.make_train_step(run.graphdef, run.tx, run.schedule, config, objective))

  step = faults.Faults(nonfinite_steps=((1, 1),)).wrap_train_step(make, run.objective)
  it = run.task.train_iterator()
  s1, m1 = step(run.state, next(it))
  assert not bool(m1["finite"]) and np.isnan(float(m1["loss"]))
  assert int(s1.step) == 1
  assert_same_state((s1.params, s1.opt_state), (run.state.params, run.state.opt_state))
  s2, m2 = step(s1, next(it))
  assert bool(m2["finite"]) and np.isfinite(float(m2["loss"]))
  # As optax.apply_if_finite: the skipped step did not advance the schedule.
  assert float(m2["learning_rate"]) == float(run.schedule(0)) != float(run.schedule(1))
  changed = [
    not np.array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(s2.params), jax.tree.leaves(s1.params), strict=True)
  ]
  assert sum(changed) >= len(changed) // 2  # a finite step updates


def test_skip_nonfinite_counts_and_stops_after_n_in_a_row(tmp_path, monkeypatch):
  w = str(tmp_path / "w")
  monkeypatch.setenv(faults.ENV, "nonfinite_at_step:6-7,nonfinite_at_step:10-12")
  config = tiny(**{"train.skip_nonfinite": True, "train.max_consecutive_nonfinite": 3})
  with pytest.raises(
    NonFiniteError,
    match=re.escape(
      "at step 12: 3 non-finite steps in a row (train.max_consecutive_nonfinite=3); "
      f"last good checkpoint: step 8 in {w}/checkpoints"
    ),
  ):
    train.train_and_evaluate(config, w)
  rows = [r for r in writers.read_metrics(w) if r["split"] == "train"]
  assert [(r["step"], r["skipped_steps"]) for r in rows] == [(5, 0), (10, 3)]
  assert all(np.isfinite(r["loss"]) for r in rows)  # means over applied steps
  assert committed(w) == [4, 8]
  for step in (4, 8):
    assert bool(step_lib.all_finite(state_at(w, step)))


# --------------------------------------------------------------------------
# One run per workdir

HOLD_LOCK = (
  "import sys; "
  "from attention_jax.workdir_lock import WorkdirLock; "
  "WorkdirLock(sys.argv[1]).acquire(); print('locked', flush=True); "
  "sys.stdin.read()"
)


def test_second_run_refused_and_stale_lock_taken_over(reference, tmp_path):
  ref_dir, final = reference
  w = copy_workdir(ref_dir, tmp_path / "w")
  holder = subprocess.Popen(
    [sys.executable, "-c", HOLD_LOCK, w], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
  )
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(workdir_lock.WorkdirLockedError) as e:
      train.train_and_evaluate(tiny(), w)
    msg = str(e.value)
    assert msg.startswith(f"workdir {w} is in use by process {holder.pid} on ")
    assert "\n" not in msg
  finally:
    holder.kill()  # SIGKILL: the lock file stays behind, naming a dead PID
    holder.wait()
  lock_path = os.path.join(w, workdir_lock.LOCK_NAME)
  with open(lock_path) as f:
    assert json.load(f)["pid"] == holder.pid
  assert train.train_and_evaluate(tiny(), w) == {"step": 12, "split": "eval", **final}
  assert not os.path.exists(lock_path)


def test_lock_file_of_a_live_unrelated_process_is_not_a_lock(tmp_path):
  # The PID may have been reused: only the kernel's flock counts.
  (tmp_path / workdir_lock.LOCK_NAME).write_text(json.dumps({"pid": os.getppid()}))
  with workdir_lock.WorkdirLock(str(tmp_path)) as lock:
    with open(lock.path) as f:
      assert json.load(f)["pid"] == os.getpid()
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"process {os.getpid()}"):
      workdir_lock.WorkdirLock(str(tmp_path)).acquire()  # a second holder, same process
  assert not os.path.exists(tmp_path / workdir_lock.LOCK_NAME)


# --------------------------------------------------------------------------
# Exit codes, fault hook, no pickle


@pytest.mark.parametrize(
  "error,code",
  [
    (lambda: config_lib.ConfigError("bad key"), 2),
    (lambda: ResumeRefused("cannot resume"), 2),
    (lambda: NonFiniteError("loss became nan"), 3),
    (lambda: checkpoint.CheckpointWriteError("cannot write"), 4),
    (lambda: checkpoint.CorruptCheckpointError(3, "step 3 is corrupt"), 4),
    (lambda: workdir_lock.WorkdirLockedError("in use"), 5),
    (lambda: Preempted("stopped by SIGTERM"), 75),
  ],
)
def test_exit_codes_and_one_line(error, code, capsys):
  from experiments import cli as cli_lib

  with pytest.raises(SystemExit) as e:
    with cli_lib.errors_as_one_line():
      raise error()
  assert e.value.code == code
  err = capsys.readouterr().err
  assert err == f"error: {error()}\n"


def test_a_quoted_error_keeps_its_start_and_its_reason():
  """A library error quoted in ours is cut in the middle, not at the end: a
  long path must not push out the reason that ends the message."""
  from attention_jax.errors import one_line

  e = ValueError(f'Error writing "/{"d" * 500}/x":\n Failed to write: File too large')
  text = one_line(e, 120, with_type=True)
  assert text.startswith('ValueError: Error writing "/ddd') and "\n" not in text
  assert text.endswith("Failed to write: File too large") and " … " in text
  assert len(text) == len("ValueError: ") + 120 + len(" … ")
  assert one_line(ValueError("short"), 120) == "short"


def test_fault_spec_parsing():
  f = faults.parse(
    "kill_at_step:3, nonfinite_at_step:5-7,nonfinite_at_step:9,fsize_limit_at_save:8:100"
  )
  assert f.kill_at_step == 3 and f.nonfinite_steps == ((5, 7), (9, 9))
  assert f.fsize_limit_at_save == (8, 100) and f.sigterm_at_step is None
  assert faults.parse("") == faults.Faults()
  with pytest.raises(ValueError, match="cannot parse 'kill_at_stpe:3'"):
    faults.parse("kill_at_stpe:3")


PICKLE_USE = re.compile(
  r"^\s*(import|from)\s+(c?pickle|dill|cloudpickle|shelve|joblib)\b"
  r"|\b(c?pickle|dill|cloudpickle|joblib)\.(loads?|dumps?|Pickler|Unpickler)\b"
  r"|allow_pickle\s*=\s*True",
  re.M,
)


def _pickle_uses(text: str) -> list[str]:
  return [m.group(0).strip() for m in PICKLE_USE.finditer(text)]


def test_no_pickle_in_the_package(reference):
  assert _pickle_uses("import pickle\nx = 1\n") == ["import pickle"]  # can fail
  assert _pickle_uses("np.load(f, allow_pickle=True)") == ["allow_pickle=True"]
  assert _pickle_uses('"""No pickle anywhere."""') == []
  found = []
  for top in ("attention_jax", "experiments", "configs"):
    for d, _, names in os.walk(os.path.join(ROOT, top)):
      for n in names:
        if n.endswith(".py"):
          with open(os.path.join(d, n), encoding="utf-8") as f:
            found += [f"{os.path.join(d, n)}: {u}" for u in _pickle_uses(f.read())]
  assert found == []
  # Nor does a run write any: configs as JSON, vocabularies as text.
  written = [n for _, _, ns in os.walk(reference[0]) for n in ns]
  assert not [n for n in written if n.endswith((".pkl", ".pickle", ".npy", ".npz"))]
  assert {"config.json", "vocab_src.txt", "vocab_tgt.txt"} <= set(written)
