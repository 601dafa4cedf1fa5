"""Ctrl-C, bad input and failed starts at the command line: issue 22's table.

Every case is a real ``python -m experiments.…`` process: its exit code, its
one ``error:`` line (naming the key, file or path), no traceback, and where the
case promises it, the SHA-256 of every file in the workdir before and after.
Ctrl-C is SIGINT sent to the process group of a run started in its own
session (a background job of a non-interactive shell would ignore it). The
runs share one tiny trained workdir per task (module fixtures) and a
persistent JAX compilation cache; the cases that train nothing run a few at a
time.
"""

import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, SWEEP_ENV, snapshot, tiny_config

from attention_jax import config as config_lib
from attention_jax import faults, fileio

DATA = os.path.join(ROOT, "tests", "data")

# 6 steps: checkpoints at 3 and 6, train rows at 3 and 6, one evaluation (6).
TINY_FILES = {
  "data.task": "files",
  "data.max_length": 12,
  "model.embed_dim": 8,
  "model.hidden_size": 16,
  "train.steps": 6,
  "train.batch_size": 8,
  "train.warmup_steps": 1,
  "train.log_every_steps": 3,
  "eval.every_steps": 6,
  "eval.batch_size": 40,
  "checkpoint.every_steps": 3,
}


def sha256(path) -> str:
  return fileio.sha256_file(str(path))


def error_lines(stderr: str) -> list[str]:
  return re.findall(r"^error: [^\n]*", stderr, re.M)


def eval_rows(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return [{k: v for k, v in r.items() if not k.endswith("per_sec")} for r in rows]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  """Data files, the tiny config file and the subprocesses' environment."""
  base = tmp_path_factory.mktemp("faults_cli")
  data = base / "data"
  data.mkdir()
  for name in ("ende_train.tsv", "ende_dev.tsv"):
    shutil.copy(os.path.join(DATA, name), data / name)
  config = tiny_config(
    **TINY_FILES,
    **{
      "data.train_path": str(data / "ende_train.tsv"),
      "data.eval_path": str(data / "ende_dev.tsv"),
      "data.tfds_data_dir": str(base / "tfds"),
    },
  )
  config_file = base / "tiny_files.py"
  config_file.write_text(
    "import json\nimport ml_collections\n\n\ndef get_config(arg=None):\n"
    f"  return ml_collections.ConfigDict(json.loads({config_lib.to_json(config)!r}))\n"
  )
  words = ["the", "dog", "cat", "runs", "sees", "a", "big", "bird", "and"]
  text = "".join(f"{words[i % 9]} {words[i * 7 % 9]} {words[i * 5 % 9]}.\n" for i in range(400))
  (data / "corpus.txt").write_text(text)
  environ = {k: v for k, v in os.environ.items() if k != faults.ENV}
  environ.update(
    JAX_PLATFORMS="cpu",
    JAX_COMPILATION_CACHE_DIR=str(base / "jax_cache"),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )
  return {"base": base, "data": data, "config": str(config_file), "environ": environ}


def command(env, module, *args) -> list[str]:
  if module == "run" and not any(a.startswith("--config") for a in args[:1]):
    args = (f"--config={env['config']}", *args)
  return [sys.executable, "-m", f"experiments.{module}", *args]


def run(env, module, *args, fault=None, timeout=600):
  environ = dict(env["environ"], **({faults.ENV: fault} if fault else {}))
  return subprocess.run(
    command(env, module, *args),
    cwd=ROOT,
    env=environ,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def start(env, module, *args, fault=None):
  """A process in its own session (its own process group), stderr piped."""
  environ = dict(env["environ"], **({faults.ENV: fault} if fault else {}))
  return subprocess.Popen(
    command(env, module, *args),
    cwd=ROOT,
    env=environ,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    start_new_session=True,
    # Ctrl-C as in a terminal's foreground job, even when pytest runs in the
    # background (where SIGINT is ignored, and an ignored signal is inherited)
    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
  )


def wait_for(proc, text: str) -> list[str]:
  """Reads ``proc``'s stderr until a line holds ``text``; returns the lines."""
  lines = []
  for line in proc.stderr:
    lines.append(line)
    if text in line:
      return lines
  raise AssertionError(f"process ended before {text!r}: {''.join(lines)[-3000:]}")


def copy(src, dst) -> str:
  shutil.copytree(src, dst)
  return str(dst)


@pytest.fixture(scope="module")
def runs(env):
  """The tiny files run, never interrupted, and a 2-step character-level GPT
  (model.max_positions 64), trained side by side."""
  gpt_args = (
    "--config=configs/gpt.py:tiny",
    f"--workdir={env['base'] / 'gpt'}",
    f"--config.data.train_path={env['data'] / 'corpus.txt'}",
    "--config.train.steps=2",
    "--config.train.warmup_steps=1",
    "--config.eval.every_steps=2",
    "--config.checkpoint.every_steps=2",
  )
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    files = pool.submit(run, env, "run", f"--workdir={env['base'] / 'trained'}")
    gpt = pool.submit(run, env, "run", *gpt_args)
    for p in (files.result(), gpt.result()):
      assert p.returncode == 0, p.stderr[-3000:]
  return str(env["base"] / "trained"), str(env["base"] / "gpt")


@pytest.fixture(scope="module")
def trained(runs):
  """(workdir, metrics rows) of the tiny files run."""
  return runs[0], eval_rows(runs[0])


@pytest.fixture(scope="module")
def gpt(runs):
  return runs[1]


# --------------------------------------------------------------------------
# Ctrl-C during training


def test_ctrl_c_saves_the_step_and_the_resumed_run_equals_an_uninterrupted_one(
  env, trained, tmp_path
):
  w = str(tmp_path / "w")
  proc = start(env, "run", f"--workdir={w}", fault="pause_at_step:4")
  wait_for(proc, "fault: paused after step 4")
  os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
  _, rest = proc.communicate(timeout=600)
  assert proc.returncode == 130, rest[-3000:]
  assert "Traceback" not in rest
  ckpt = os.path.join(w, "checkpoints")
  assert error_lines(rest) == [
    f"error: stopped by Ctrl-C (SIGINT) after step 4: checkpoint step 4 saved in "
    f"{ckpt}; run the same command again to resume"
  ]
  assert sorted(int(s) for s in os.listdir(ckpt)) == [3, 4]
  p = run(env, "run", f"--workdir={w}")  # the same command resumes
  assert p.returncode == 0, p.stderr[-3000:]
  assert "resumed from checkpoint at step 4" in p.stderr
  assert eval_rows(w) == trained[1]  # every row, the final evaluation included


def test_a_second_ctrl_c_stops_at_once(env, tmp_path):
  w = str(tmp_path / "w")
  proc = start(env, "run", f"--workdir={w}", fault="pause_at_step:2,pause_before_save:2")
  wait_for(proc, "fault: paused after step 2")
  os.killpg(proc.pid, signal.SIGINT)
  wait_for(proc, "fault: paused before saving step 2")  # the first Ctrl-C's save
  os.killpg(proc.pid, signal.SIGINT)
  _, rest = proc.communicate(timeout=600)
  assert proc.returncode == 130, rest[-3000:]
  assert "Traceback" not in rest
  assert error_lines(rest) == [
    "error: stopped at once by a second Ctrl-C, without saving the step in progress; "
    f"the newest checkpoint in {w}/checkpoints holds the run: run the same command "
    "again to resume from it"
  ]
  assert not os.path.exists(os.path.join(w, "checkpoints", "2"))


def test_ctrl_c_in_evaluate_is_one_line_and_writes_nothing_half(env, trained, tmp_path):
  w = copy(trained[0], tmp_path / "w")
  proc = start(env, "evaluate", f"--workdir={w}", "--split=eval")
  time.sleep(2)
  os.killpg(proc.pid, signal.SIGINT)
  out, err = proc.communicate(timeout=600)
  assert "Traceback" not in err
  if proc.returncode == 0:  # it finished before the signal (a fast machine)
    pytest.skip("evaluate finished within 2 s")
  assert proc.returncode == 130, err[-3000:]
  assert error_lines(err) == ["error: interrupted by Ctrl-C (SIGINT)"]
  eval_dir = os.path.join(w, "eval")
  written = sorted(os.listdir(eval_dir)) if os.path.isdir(eval_dir) else []
  if written:  # Ctrl-C came while the files were written: all of them, whole
    assert "wrote " in out and not [n for n in written if n.endswith(".tmp")]
    assert written == sorted(os.path.basename(p) for p in out.split("wrote ")[1].split(", "))


def test_ctrl_c_in_a_sweep_stops_its_point_which_keeps_its_step(env, sweep_config, tmp_path):
  s = str(tmp_path / "sweep")
  point = os.path.join(s, "hidden_size=8")
  env = dict(env, environ=dict(env["environ"], **SWEEP_ENV))
  proc = start(
    env, "sweep", f"--config={sweep_config}:one", f"--workdir={s}", fault="pause_at_step:3"
  )
  log = os.path.join(point, "sweep.log")
  deadline = time.time() + 600
  while not (os.path.exists(log) and "fault: paused after step 3" in open(log).read()):
    assert time.time() < deadline and proc.poll() is None, proc.stderr.read()[-3000:]
    time.sleep(0.2)
  os.killpg(proc.pid, signal.SIGINT)  # the sweep and its point's run, as Ctrl-C
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 130, err[-3000:]
  assert "Traceback" not in err
  assert error_lines(err) == ["error: interrupted; run the same command again to resume"]
  with open(os.path.join(point, "sweep_status.json")) as f:
    st = json.load(f)
  assert st["status"] == "stopped" and st["returncode"] == 130
  assert (
    "error: stopped by Ctrl-C (SIGINT) after step 3: checkpoint step 3 saved" in open(log).read()
  )
  assert os.path.isdir(os.path.join(point, "checkpoints", "3"))
  p = run(env, "sweep", f"--workdir={s}", "--status")
  assert p.returncode == 0, p.stderr[-3000:]
  line = next(x for x in p.stdout.splitlines() if "hidden_size=8" in x)
  assert "stopped" in line and "130" in line, p.stdout


# --------------------------------------------------------------------------
# Bad input and failed starts: the processes that train nothing, run 3 at a
# time. Each row: (args, exit code, the error line's pattern, the workdir
# whose files must stay byte-identical or None).


def _rows(env, trained, gpt) -> dict:
  base, data = env["base"], env["data"]
  w0 = trained[0]
  changed = data / "changed.tsv"  # the training TSV, one target edited
  text = (data / "ende_train.tsv").read_text()
  changed.write_text(text.replace("\t", "\tein ", 1))
  bad = data / "bad.tsv"
  bad.write_text(text + "no tab on this line\n")
  afile = base / "a_file"
  afile.write_text("x")
  w_changed = copy(w0, base / "w_changed")
  w_bad = copy(w0, base / "w_bad")
  w_cut = copy(w0, base / "w_cut")
  with open(os.path.join(w_cut, "metrics.jsonl"), "a") as f:
    f.write('{"step": 6, "split": "ev')  # a crash in the middle of a write
  w_eval = copy(w0, base / "w_eval")
  with open(os.path.join(w_eval, "eval"), "w") as f:
    f.write("a file where the eval/ directory goes")
  w_cmp = copy(w0, base / "w_cmp")
  g_changed = copy(gpt, base / "g_changed")
  corpus = str(data / "corpus.txt")
  gpt_corpus2 = data / "corpus2.txt"
  gpt_corpus2.write_text((data / "corpus.txt").read_text().replace("dog", "cow"))
  new = str(base / "never_started")
  h = {n: sha256(data / n) for n in ("ende_train.tsv", "changed.tsv", "corpus.txt", "corpus2.txt")}
  return {
    "workdir_empty": (
      ("run", "--workdir="),
      2,
      r"error: --workdir is empty: give the run its own directory",
      None,
    ),
    "workdir_blank": (("run", "--workdir=  "), 2, r"error: --workdir is blank", None),
    "workdir_root": (
      ("run", "--workdir=/"),
      2,
      r"error: --workdir '/' is the filesystem root",
      None,
    ),
    "steps_abc": (
      ("run", f"--workdir={new}", "--config.train.steps=abc"),
      2,
      r"error: --config.train.steps=abc: config key 'train.steps' must be of type int, got 'abc'$",
      None,
    ),
    "steps_float": (
      ("run", f"--workdir={new}", "--config.train.steps=1.5"),
      2,
      r"error: --config.train.steps=1.5: config key 'train.steps' must be of type int, got '1.5'$",
      None,
    ),
    "learning_rate_abc": (
      ("run", f"--workdir={new}", "--config.train.learning_rate=abc"),
      2,
      r"config key 'train.learning_rate' must be of type float, got 'abc'$",
      None,
    ),
    "learning_rate_nan": (
      ("run", f"--workdir={new}", "--config.train.learning_rate=nan"),
      2,
      r"config key 'train.learning_rate' must be a finite number, got nan$",
      None,
    ),
    "data_changed": (
      (
        "run",
        f"--workdir={w_changed}",
        f"--config.data.train_path={changed}",
        "--config.train.steps=8",
        "--allow_config_change",
      ),
      2,
      re.escape(
        f"error: cannot resume {w_changed} from step 6: its data changed: data.train_path "
        f"{changed} has sha256 {h['changed.tsv']} ({os.path.getsize(changed)} bytes), "
        f"{h['ende_train.tsv']} ({len(text.encode())} bytes) when the run read "
        f"{data / 'ende_train.tsv'}. Pass --allow_data_change"
      ),
      w_changed,
    ),
    "text_changed": (
      (
        "run",
        "--config=configs/gpt.py:tiny",
        f"--workdir={g_changed}",
        f"--config.data.train_path={gpt_corpus2}",
        "--config.train.steps=4",
        "--config.train.warmup_steps=1",
        "--config.eval.every_steps=2",
        "--config.checkpoint.every_steps=2",
        "--allow_config_change",
      ),
      2,
      re.escape(f"its data changed: data.train_path {gpt_corpus2} has sha256 {h['corpus2.txt']} ")
      + r"\(\d+ bytes\), "
      + re.escape(f"{h['corpus.txt']} ")
      + r"\(\d+ bytes\) when the run read "
      + re.escape(corpus),
      g_changed,
    ),
    "failed_resume_changes_nothing": (
      (
        "run",
        f"--workdir={w_bad}",
        f"--config.data.train_path={bad}",
        "--config.train.steps=8",
        "--allow_config_change",
        "--allow_data_change",
      ),
      2,
      re.escape(f"error: {bad}:239: expected exactly one tab (source<TAB>target), found 0"),
      w_bad,
    ),
    "failed_start_leaves_no_workdir": (
      ("run", f"--workdir={new}", f"--config.data.train_path={bad}"),
      2,
      re.escape(f"error: {bad}:239: expected exactly one tab"),
      None,
    ),
    "unwritable_workdir": (
      ("run", f"--workdir={afile}/run"),
      6,
      re.escape(f"error: {afile}/run: Not a directory (ENOTDIR)") + "$",
      None,
    ),
    "metrics_cut_short": (("run", f"--workdir={w_cut}"), 0, None, w_cut),
    "evaluate_unwritable": (
      ("evaluate", f"--workdir={w_eval}", "--split=eval"),
      6,
      re.escape(f"error: {w_eval}/eval: File exists (EEXIST)") + "$",
      None,
    ),
    "compare_one_model": (("compare", f"--workdirs={w_cmp}", "--split=eval"), 0, None, None),
    "generate_bad_temperature": (
      ("generate", f"--workdir={gpt}", "--prompt=the", "--temperature=-1"),
      2,
      r"error: --temperature -1.0: must be a finite number >= 0 \(0: greedy\)$",
      None,
    ),
    "generate_default_length": (
      ("generate", f"--workdir={gpt}", "--prompt=the dog"),
      0,
      None,
      None,
    ),
  }


@pytest.fixture(scope="module")
def outcomes(env, trained, gpt):
  """Each row's (CompletedProcess, workdir hashes before, after)."""
  rows = _rows(env, trained, gpt)
  before = {k: snapshot(r[3]) if r[3] else None for k, r in rows.items()}

  def one(key):
    args = rows[key][0]
    return key, run(env, args[0], *args[1:])

  with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
    done = dict(pool.map(one, rows))
  return {
    k: (rows[k], done[k], before[k], snapshot(r[3]) if r[3] else None) for k, r in rows.items()
  }


CASES = [
  "workdir_empty",
  "workdir_blank",
  "workdir_root",
  "steps_abc",
  "steps_float",
  "learning_rate_abc",
  "learning_rate_nan",
  "data_changed",
  "text_changed",
  "failed_resume_changes_nothing",
  "failed_start_leaves_no_workdir",
  "unwritable_workdir",
  "metrics_cut_short",
  "evaluate_unwritable",
  "compare_one_model",
  "generate_bad_temperature",
  "generate_default_length",
]


@pytest.mark.parametrize("case", CASES)
def test_one_line_exit_code_and_workdir_kept(outcomes, env, case):
  (args, code, pattern, kept), p, before, after = outcomes[case]
  assert p.returncode == code, p.stderr[-3000:]
  assert "Traceback" not in p.stderr
  errors = error_lines(p.stderr)
  if pattern is None:
    assert errors == []
  else:
    assert len(errors) == 1 and re.search(pattern, errors[0]), p.stderr[-3000:]
  if kept:
    assert after == before  # byte-identical, every file
  if case == "failed_start_leaves_no_workdir":
    assert not os.path.exists(env["base"] / "never_started")
  if case == "metrics_cut_short":
    assert "training already finished" in p.stderr
    assert p.stderr.count("skipped the last line, cut short") == 1
  if case == "evaluate_unwritable":  # the numbers came out before the failed write
    assert re.search(r"bleu", p.stdout), p.stdout
  if case == "compare_one_model":
    assert "| model |" in p.stdout.lower() or "bleu" in p.stdout.lower()
    assert "Note: one model: there is nothing to compare it with, so no p-values" in p.stdout
  if case == "generate_default_length":
    assert "sampling 57 characters, not 200" in p.stderr  # 64 positions - 7 of prompt
    assert p.stdout.startswith("the dog")


# --------------------------------------------------------------------------
# Data changes that are allowed or are no change


def test_moved_file_warns_and_allowed_change_is_logged(env, trained, tmp_path):
  data = env["data"]
  w = copy(trained[0], tmp_path / "w")
  moved = tmp_path / "moved.tsv"  # the same bytes at another path
  shutil.copy(data / "ende_train.tsv", moved)
  dev2 = tmp_path / "dev2.tsv"
  dev = (data / "ende_dev.tsv").read_text()
  dev2.write_text(dev.replace("\t", "\tein ", 1))
  p = run(
    env,
    "run",
    f"--workdir={w}",
    f"--config.data.train_path={moved}",
    f"--config.data.eval_path={dev2}",
    "--config.train.steps=8",
    "--allow_config_change",
  )
  assert p.returncode == 2 and "data.eval_path" in error_lines(p.stderr)[0]
  assert "data.train_path" not in error_lines(p.stderr)[0]  # moved: not a change
  p = run(
    env,
    "run",
    f"--workdir={w}",
    f"--config.data.train_path={moved}",
    f"--config.data.eval_path={dev2}",
    "--config.train.steps=8",
    "--allow_config_change",
    "--allow_data_change",
  )
  assert p.returncode == 0, p.stderr[-3000:]
  assert f"{data / 'ende_train.tsv'} moved to {moved} (same content" in p.stderr
  with open(os.path.join(w, "config_changes.jsonl")) as f:
    record = json.loads(f.readlines()[-1])
  assert record["step"] == 6
  assert record["changes"][f"data: data.eval_path {dev2}"] == [
    f"sha256 {sha256(data / 'ende_dev.tsv')}",
    f"sha256 {sha256(dev2)}",
  ]
  with open(os.path.join(w, "data_fingerprint.json")) as f:
    recorded = {r["key"]: r for r in json.load(f)["files"]}
  assert recorded["data.train_path"]["path"] == str(moved)
  assert recorded["data.eval_path"]["sha256"] == sha256(dev2)
