"""Config validation: unknown keys and bad values are one clear error."""

import os
import subprocess
import sys

import ml_collections
import pytest

from attention_jax import config as config_lib
from conftest import ROOT, tiny_config


def run_cli(*args, cwd=ROOT):
  return subprocess.run([sys.executable, "-m", "experiments.run", *args],
                        cwd=cwd, capture_output=True, text=True, timeout=120)


def test_every_shipped_config_is_valid():
  import importlib.util
  cfg_dir = os.path.join(ROOT, "configs")
  files = [f for f in sorted(os.listdir(cfg_dir)) if f.endswith(".py")]
  assert "quickstart.py" in files
  for f in files:
    spec = importlib.util.spec_from_file_location(f[:-3], os.path.join(cfg_dir, f))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config_lib.validate(mod.get_config())


@pytest.mark.parametrize("key,value,needle", [
    ("train.steps", -5, "'train.steps' must be > 0"),
    ("train.batch_size", 0, "'train.batch_size' must be > 0"),
    ("model.name", "nope", "'model.name' has value 'nope'; allowed: 'gpt', 'luong', "
                            "'rnn_encdec', 'rnnsearch', 'seq2seq_lstm', 'transformer'"),
    ("model.attention_score", "bilinear", "'model.attention_score' has value "
                                          "'bilinear'; allowed: 'dot', 'general', 'concat'"),
    ("model.attention_dim", -1, "'model.attention_dim' must be >= 0"),
    ("data.task", "nope", "'data.task' has value 'nope'; allowed:"),
    ("train.schedule", "linear", "'train.schedule'"),
    ("model.dropout", 1.5, "'model.dropout' must be in [0, 1)"),
    ("train.learning_rate", "fast", "'train.learning_rate' must be of type float"),
    ("data.train_max_length", 0, "'data.train_max_length' (0) must be >= "
                                 "'data.train_min_length' (1)"),
])
def test_bad_values_name_the_key(key, value, needle):
  d = tiny_config().to_dict()  # a plain dict, as config.json or a file could give
  section, leaf = key.split(".")
  d[section][leaf] = value
  c = ml_collections.ConfigDict(d)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert needle in str(e.value)
  assert "\n" not in str(e.value)


def test_unknown_key_in_code_suggests_nearest():
  c = tiny_config()
  c.train.stpes = 5
  with pytest.raises(config_lib.ConfigError, match=r"unknown config key "
                     r"'train.stpes' \(did you mean 'train.steps'\?\)"):
    config_lib.validate(c)


def test_typo_inside_config_file_names_file_and_key(tmp_path):
  cfg = tmp_path / "typo.py"
  cfg.write_text("from attention_jax.config import base_config\n"
                 "def get_config(arg=None):\n"
                 "  c = base_config()\n"
                 "  c.model.hiden_size = 64\n"
                 "  return c\n")
  work = tmp_path / "w"
  r = run_cli("--config", str(cfg), "--workdir", str(work))
  assert r.returncode == 2
  assert r.stderr.strip().splitlines()[-1] == (
      f"error: {cfg}: unknown config key 'model.hiden_size' "
      "(did you mean 'model.hidden_size'?)")
  assert not work.exists()  # nothing started


def test_typo_on_command_line_names_key(tmp_path):
  work = tmp_path / "w"
  r = run_cli("--config", "configs/quickstart.py", "--workdir", str(work),
              "--config.train.stpes=5")
  assert r.returncode == 2
  assert "stpes" in r.stderr and "did you mean 'train.steps'" in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1
  r = run_cli("--config", "configs/quickstart.py", "--workdir", str(work),
              "--config.train.steps=-3")
  assert r.returncode == 2
  assert r.stderr.strip() == ("error: configs/quickstart.py: config key "
                              "'train.steps' must be > 0, got -3")
  r = run_cli("--config", "configs/missing.py", "--workdir", str(work))
  assert r.returncode == 2
  assert r.stderr.strip() == "error: config file 'configs/missing.py' not found"
  assert not work.exists()


def test_json_round_trip():
  c = tiny_config()
  back = config_lib.from_json(config_lib.to_json(c))
  config_lib.validate(back)
  assert back.to_dict() == c.to_dict()
