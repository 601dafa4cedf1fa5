"""Config validation: unknown keys and bad values are one clear error."""

import os
import subprocess
import sys

import ml_collections
import pytest
from conftest import ROOT, tiny_config

from attention_jax import config as config_lib
from attention_jax import validation
from attention_jax import workdir as workdir_lib


def run_cli(*args, cwd=ROOT):
  return subprocess.run(
    [sys.executable, "-m", "experiments.run", *args],
    cwd=cwd,
    capture_output=True,
    text=True,
    timeout=120,
  )


def _load(path, name):
  import importlib.util

  spec = importlib.util.spec_from_file_location(name, path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def _shipped_configs():
  """(``configs/...py`` as errors name it, module) for every config file."""
  helpers = ("__init__.py", "common.py")  # no get_config: not configs
  found = []
  for sub in ("", "papers"):
    folder = os.path.join(ROOT, "configs", sub)
    for f in sorted(os.listdir(folder)):
      if f.endswith(".py") and f not in helpers:
        rel = "/".join(p for p in ("configs", sub, f) if p)
        found.append((rel, _load(os.path.join(folder, f), rel[:-3].replace("/", "_"))))
  return found


def test_every_shipped_config_is_valid():
  configs = dict(_shipped_configs())
  assert "configs/quickstart.py" in configs and "configs/papers/cho2014.py" in configs
  for rel, mod in configs.items():
    config = config_lib.apply_per_model(mod.get_config())
    if rel == "configs/translate.py":  # real text: the paths come from the command line
      with pytest.raises(config_lib.ConfigError, match="'data.train_path' is empty"):
        validation.validate(config)
      config = config_lib.apply_per_model(mod.get_config("tiny"))
    validation.validate(config)


def test_every_config_names_itself_and_a_bad_arg_in_one_line(tmp_path):
  for rel, mod in _shipped_configs():
    for bad in ("big", "big,tiny"):
      with pytest.raises(ValueError) as e:
        mod.get_config(bad)
      msg = str(e.value)
      assert msg.startswith(f"{rel}: ") and "'big'" in msg and "\n" not in msg, msg
    if hasattr(mod, "sweep"):  # the sweep reads ARG as get_config does
      with pytest.raises(ValueError, match=f"^{rel}: unknown argument 'big'"):
        list(mod.sweep("big"))
    assert mod.get_config("").to_dict() == mod.get_config().to_dict(), rel
  quickstart = dict(_shipped_configs())["configs/quickstart.py"]
  with pytest.raises(ValueError, match="unknown argument 'tiny'; this config takes no argument"):
    quickstart.get_config("tiny")
  # Two modes at once are refused; so is a config outside configs/ by its path.
  cfg = tmp_path / "mine.py"
  cfg.write_text(
    "from attention_jax.config import base_config\n"
    "from configs import common\n"
    "def get_config(arg=None):\n"
    "  return common.apply_mode(base_config(), arg, __file__,\n"
    "                           full=print, tiny=print)\n"
  )
  mine = _load(str(cfg), "mine")
  with pytest.raises(
    ValueError,
    match=f"^{cfg}: arguments 'full', 'tiny' do not combine; give one of 'full', 'tiny'$",
  ):
    mine.get_config("full,tiny")


@pytest.mark.parametrize(
  "key,value,needle",
  [
    ("train.steps", -5, "'train.steps' must be > 0"),
    ("train.batch_size", 0, "'train.batch_size' must be > 0"),
    ("model.name", "nope", "'model.name' has value 'nope'; allowed: "),
    (
      "model.attention_score",
      "bilinear",
      "'model.attention_score' has value 'bilinear'; allowed: 'dot', 'general', 'concat'",
    ),
    ("model.attention_dim", -1, "'model.attention_dim' must be >= 0"),
    ("data.task", "nope", "'data.task' has value 'nope'; allowed:"),
    ("train.schedule", "linear", "'train.schedule'"),
    ("model.dropout", 1.5, "'model.dropout' must be in [0, 1)"),
    ("train.learning_rate", "fast", "'train.learning_rate' must be of type float"),
    (
      "data.train_max_length",
      0,
      "'data.train_max_length' (0) must be >= 'data.train_min_length' (1)",
    ),
    (
      "checkpoint.best_metric",
      "mse",
      "'checkpoint.best_metric' has value 'mse', which the seq2seq objective of data.task "
      "'reverse' does not report; allowed: 'bleu', 'sequence_accuracy', 'token_accuracy', "
      "'loss', 'perplexity'",
    ),
    ("checkpoint.best_metric", "chrf", "does not report (set eval.chrf=True to report it)"),
    ("checkpoint.best_mode", "up", "'checkpoint.best_mode' has value 'up'; allowed: 'max', 'min'"),
    ("checkpoint.best_to_keep", 0, "'checkpoint.best_to_keep' must be > 0"),
  ],
)
def test_bad_values_name_the_key(key, value, needle):
  d = tiny_config().to_dict()  # a plain dict, as config.json or a file could give
  section, leaf = key.split(".")
  d[section][leaf] = value
  c = ml_collections.ConfigDict(d)
  with pytest.raises(config_lib.ConfigError) as e:
    validation.validate(c)
  assert needle in str(e.value)
  assert "\n" not in str(e.value)


def test_unknown_key_in_code_suggests_nearest():
  c = tiny_config()
  c.train.stpes = 5
  with pytest.raises(
    config_lib.ConfigError,
    match=r"unknown config key "
    r"'train.stpes' \(did you mean 'train.steps'\?\)",
  ):
    validation.validate(c)


def test_typo_inside_config_file_names_file_and_key(tmp_path):
  cfg = tmp_path / "typo.py"
  cfg.write_text(
    "from attention_jax.config import base_config\n"
    "def get_config(arg=None):\n"
    "  c = base_config()\n"
    "  c.model.hiden_size = 64\n"
    "  return c\n"
  )
  work = tmp_path / "w"
  r = run_cli("--config", str(cfg), "--workdir", str(work))
  assert r.returncode == 2
  assert r.stderr.strip().splitlines()[-1] == (
    f"error: {cfg}: unknown config key 'model.hiden_size' (did you mean 'model.hidden_size'?)"
  )
  assert not work.exists()  # nothing started


def test_typo_on_command_line_names_key(tmp_path):
  work = tmp_path / "w"
  r = run_cli("--config", "configs/quickstart.py", "--workdir", str(work), "--config.train.stpes=5")
  assert r.returncode == 2
  assert "stpes" in r.stderr and "did you mean 'train.steps'" in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1
  r = run_cli(
    "--config", "configs/quickstart.py", "--workdir", str(work), "--config.train.steps=-3"
  )
  assert r.returncode == 2
  assert r.stderr.strip() == (
    "error: configs/quickstart.py: config key 'train.steps' must be > 0, got -3"
  )
  r = run_cli("--config", "configs/quickstart.py:big", "--workdir", str(work))
  assert r.returncode == 2
  assert r.stderr.strip() == (
    "error: configs/quickstart.py: unknown argument 'big'; this config takes no argument"
  )
  r = run_cli("--config", "configs/missing.py", "--workdir", str(work))
  assert r.returncode == 2
  assert r.stderr.strip() == "error: config file 'configs/missing.py' not found"
  assert not work.exists()


def test_json_round_trip():
  c = tiny_config()
  back = config_lib.from_json(config_lib.to_json(c))
  validation.validate(back)
  assert back.to_dict() == c.to_dict()


# --------------------------------------------------------------------------
# Every key honoured or refused


@pytest.mark.parametrize(
  "overrides,needle",
  [
    (
      {"model.name": "rnnsearch", "model.cell": "lstm"},
      "config key 'model.cell' is 'lstm', but model 'rnnsearch' does not read it",
    ),
    (
      {"model.name": "rnn_encdec", "model.num_layers": 2},
      "config key 'model.num_layers' is 2, but model 'rnn_encdec' does not read it",
    ),
    (
      {"model.name": "transformer", "model.reverse_source": True},
      "'model.reverse_source' is True, but model 'transformer' does not read it",
    ),
    (
      {
        "model.name": "gpt",
        "data.task": "text",
        "data.train_path": "x.txt",
        "model.tie_embeddings": False,
      },
      "'model.tie_embeddings' is False, but model 'gpt' does not read it",
    ),
    (
      {"model.name": "luong", "model.attention_score": "general", "model.attention_dim": 8},
      "'model.attention_dim' is 8, but model 'luong' does not read it",
    ),
    (
      {
        "data.task": "files",
        "data.train_path": "a.tsv",
        "data.eval_path": "b.tsv",
        "data.vocab_size": 7,
      },
      "config key 'data.vocab_size' is 7, but data.task 'files' does not read it",
    ),
    (
      {"data.task": "addition", "data.vocab_size": 7},
      "'data.vocab_size' is 7, but data.task 'addition' does not read it",
    ),
    (
      {"data.task": "reverse", "data.tokenizer": "char"},
      "'data.tokenizer' is 'char', but data.task 'reverse' does not read it",
    ),
    (
      {"train.optimizer": "adam", "train.weight_decay": 0.1},
      "config key 'train.weight_decay' is 0.1, but train.optimizer 'adam' does "
      "not read it (only 'adamw' does)",
    ),
    (
      {"train.schedule": "rsqrt", "train.end_lr_fraction": 0.2},
      "'train.end_lr_fraction' is 0.2, but train.schedule 'rsqrt' does not read it",
    ),
  ],
)
def test_ignored_keys_are_refused(overrides, needle):
  with pytest.raises(config_lib.ConfigError) as e:
    validation.validate(tiny_config(**overrides))
  assert needle in str(e.value) and "\n" not in str(e.value)


def test_keys_a_model_reads_conditionally_are_accepted():
  validation.validate(
    tiny_config(
      **{"model.name": "luong", "model.attention_score": "concat", "model.attention_dim": 8}
    )
  )
  validation.validate(
    tiny_config(**{"model.name": "rnnsearch", "model.readout": "maxout", "model.readout_dim": 8})
  )


def test_ignored_key_on_the_command_line_is_one_line(tmp_path):
  work = tmp_path / "w"
  r = run_cli(
    "--config", "configs/rnnsearch.py:tiny", "--workdir", str(work), "--config.model.cell=lstm"
  )
  assert r.returncode == 2
  assert r.stderr.strip().splitlines() == [
    "error: configs/rnnsearch.py:tiny: config key 'model.cell' is 'lstm', but "
    "model 'rnnsearch' does not read it: leave it at its default 'gru'; in a "
    "config file serving several models, put it under 'per_model.<model>.cell'"
  ]
  assert not work.exists()


def _multi_model_config():
  c = tiny_config(**{"model.name": "rnnsearch", "model.embed_dim": 32})
  config_lib.set_per_model(c, ("rnnsearch", "luong"), embed_dim=8)
  config_lib.set_per_model(c, "transformer", num_heads=2, mlp_dim=16)
  return c


def test_per_model_values_apply_to_the_chosen_model_only():
  c = _multi_model_config()
  with pytest.raises(config_lib.ConfigError, match="not applied yet"):
    validation.validate(c)
  r = config_lib.apply_per_model(c)
  validation.validate(r)
  assert (r.model.embed_dim, r.model.num_heads, r.model.mlp_dim) == (8, 4, 0)
  assert not r.per_model and c.per_model  # the input is not changed
  c.model.name = "transformer"
  t = config_lib.apply_per_model(c)
  validation.validate(t)
  assert (t.model.embed_dim, t.model.num_heads, t.model.mlp_dim) == (32, 2, 16)
  c.model.name = "rnn_encdec"  # no per-model values: defaults
  validation.validate(config_lib.apply_per_model(c))
  assert config_lib.apply_per_model(config_lib.apply_per_model(c)).to_dict() == (
    config_lib.apply_per_model(c).to_dict()
  )


def test_per_model_conflicts_and_mistakes_are_named():
  c = _multi_model_config()
  c.model.embed_dim = 12  # set in code: neither value may win silently
  with pytest.raises(
    config_lib.ConfigError,
    match=(
      r"'model.embed_dim' is 12 but 'per_model.rnnsearch.embed_dim' is 8: set "
      r"only one"
    ),
  ):
    config_lib.apply_per_model(c)
  # given on the command line, it wins
  assert config_lib.apply_per_model(c, explicit=["model.embed_dim"]).model.embed_dim == 12
  c = _multi_model_config()
  config_lib.set_per_model(c, "transformer", embed_dim=8)
  with pytest.raises(
    config_lib.ConfigError,
    match=(
      r"'per_model.transformer.embed_dim': model 'transformer' does not read "
      r"model.embed_dim"
    ),
  ):
    validation.prepare(c)
  c = _multi_model_config()
  config_lib.set_per_model(c, "rnnserch", embed_dim=8)
  with pytest.raises(config_lib.ConfigError, match="'per_model.rnnserch': no model"):
    validation.validate(c)
  assert "did you mean 'model.hidden_size'" in config_lib.unknown_key_message(
    "per_model.rnnsearch.hiden_size"
  )


def test_per_model_file_switches_model_on_the_command_line(tmp_path):
  """A config file serving several models: --config.model.name picks one,
  its per-model values apply, an explicit --config.model.KEY wins."""
  cfg = tmp_path / "multi.py"
  cfg.write_text(
    "from attention_jax import config as config_lib\n"
    "def get_config(arg=None):\n"
    "  c = config_lib.base_config()\n"
    "  c.model.name = 'rnnsearch'\n"
    "  c.model.hidden_size = 16\n"
    "  c.data.vocab_size = 6\n"
    "  c.data.train_max_length = c.data.eval_max_length = 4\n"
    "  c.data.eval_examples = 16\n"
    "  c.train.steps = 2\n"
    "  c.train.batch_size = 8\n"
    "  c.eval.every_steps = c.checkpoint.every_steps = 2\n"
    "  config_lib.set_per_model(c, 'rnnsearch', embed_dim=8)\n"
    "  config_lib.set_per_model(c, 'transformer', num_heads=2, mlp_dim=16)\n"
    "  return c\n"
  )
  import json

  # One subprocess (the file's own model, rnnsearch, resolves in-process in
  # the tests above): the command line switches to the Transformer, whose
  # per-model values apply except the one given explicitly.
  work = tmp_path / "w"
  r = run_cli(
    "--config",
    str(cfg),
    "--workdir",
    str(work),
    "--config.model.name=transformer",
    "--config.model.num_heads=4",
  )
  assert r.returncode == 0, r.stderr[-2000:]
  saved = json.loads((work / "config.json").read_text())
  assert saved["per_model"] == {}
  want = {"num_heads": 4, "mlp_dim": 16, "embed_dim": 32}
  assert {k: saved["model"][k] for k in want} == want


@pytest.mark.parametrize(
  "task,overrides,want",
  [
    ("reverse", {}, ("bleu", "max")),
    ("adding", {"model.name": "sequence_rnn"}, ("mse", "min")),
    ("temporal_order", {"model.name": "sequence_rnn"}, ("sequence_accuracy", "max")),
    ("copy_memory", {"model.name": "sequence_rnn"}, ("loss", "min")),
    ("reverse", {"checkpoint.best_metric": "loss"}, ("loss", "min")),
    ("reverse", {"checkpoint.best_metric": "loss", "checkpoint.best_mode": "max"}, ("loss", "max")),
  ],
)
def test_best_metric_defaults_per_objective(task, overrides, want):
  c = tiny_config(**{"data.task": task, **overrides})
  validation.validate(c)
  best = workdir_lib.best_of(c)
  assert (best.metric, best.mode, best.keep) == (*want, 1)
