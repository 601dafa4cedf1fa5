"""What a run leaves on record beside its metrics: the profiler trace of
``train.profile_steps``, ``env.json`` and the TensorBoard hyperparameters."""

import glob
import json
import os

import pytest
from conftest import tiny_config

from attention_jax import environment, host_memory, profiling, train, validation, writers
from attention_jax.errors import ConfigError

SHORT = {"train.steps": 12, "train.log_every_steps": 2, "eval.every_steps": 12}


def _losses(workdir):
  return [r["loss"] for r in writers.read_metrics(workdir) if r["split"] == "train"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The same tiny run without a trace (stopped after step 6, then resumed)
  and with a trace of steps 3..5 (uninterrupted)."""
  plain = str(tmp_path_factory.mktemp("plain"))
  traced = str(tmp_path_factory.mktemp("traced"))
  train.train_and_evaluate(tiny_config(**SHORT), plain, stop_after_step=6)
  first_start = environment.read(plain)
  train.train_and_evaluate(tiny_config(**SHORT), plain)
  final = train.train_and_evaluate(tiny_config(**SHORT, **{"train.profile_steps": "3:6"}), traced)
  return plain, traced, final, first_start


def test_profile_trace_leaves_numbers_alone(runs):
  plain, traced, _, _ = runs
  assert _losses(plain) == _losses(traced)  # bit for bit
  assert len(_losses(plain)) == 6
  assert not glob.glob(os.path.join(plain, "tb", "plugins", "profile", "*", "*"))
  files = glob.glob(os.path.join(traced, "tb", "plugins", "profile", "*", "*.xplane.pb"))
  assert len(files) == 1 and os.path.getsize(files[0]) > 0


def test_profile_window_parsing():
  assert profiling.parse_window("") is None
  assert profiling.parse_window("20:25") == (20, 25)
  for bad in ("20", "5:5", "0:3", "a:b", "3:2", "1:2:3"):
    with pytest.raises(ValueError):
      profiling.parse_window(bad)
  with pytest.raises(ConfigError, match="train.profile_steps"):
    validation.validate(tiny_config(**{"train.profile_steps": "25"}))
  with pytest.raises(ConfigError, match="starts after the last step"):
    validation.validate(tiny_config(**{"train.steps": 10, "train.profile_steps": "20:25"}))


def test_env_json_one_record_per_start(runs):
  plain, traced, _, first_start = runs
  (record,) = environment.read(traced)
  assert record["libraries"]["jax"] and record["libraries"]["flax"]
  assert set(environment.LIBRARIES) == set(record["libraries"])
  assert record["backend"] == "cpu" and record["device_count"] >= 1
  assert record["process_count"] == 1 and record["host"]
  assert record["command"] and record["start_time"]
  assert "commit" in record and "dirty" in record
  assert record["host_malloc"] == host_memory.state  # in-process: not set by the tests
  # a resume appends a record
  assert len(first_start) == 1
  assert len(environment.read(plain)) == 2
  assert environment.read(plain)[0] == first_start[0]


def test_code_version_names_each_commit(tmp_path):
  base = {"libraries": {}, "dirty": False}
  with open(tmp_path / "env.json", "w") as f:
    json.dump([{**base, "commit": "a"}, {**base, "commit": "a"}, {**base, "commit": "b"}], f)
  assert environment.code_version(str(tmp_path)) == "a then b"
  assert environment.code_version(str(tmp_path / "nothing")) is None


def test_hparams_read_back(runs):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  from tensorboard.plugins.hparams import plugin_data_pb2

  _, traced, final, _ = runs
  acc = EventAccumulator(os.path.join(traced, "tb"))
  acc.Reload()
  content = acc.PluginTagToContent("hparams")
  start = plugin_data_pb2.HParamsPluginData.FromString(
    content["_hparams_/session_start_info"]
  ).session_start_info
  hp = start.hparams
  assert hp["train.steps"].number_value == 12
  assert hp["model.name"].string_value == "rnn_encdec"
  assert hp["train.profile_steps"].string_value == "3:6"
  assert hp["checkpoint.async_save"].bool_value is True
  end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"])
  assert end.session_end_info.status == 1  # STATUS_SUCCESS
  # the session's metrics: the run's last eval scalars
  last = acc.Scalars("eval/sequence_accuracy")[-1]
  assert last.step == 12 and last.value == pytest.approx(final["sequence_accuracy"])


def test_a_parent_directory_is_one_logdir_for_hparams(runs, tmp_path):
  """Two runs under one directory (as a sweep's points): TensorBoard's
  multiplexer over the parent finds a session per run."""
  import shutil

  from tensorboard.backend.event_processing import plugin_event_multiplexer

  plain, traced, _, _ = runs
  for name, w in (("a", plain), ("b", traced)):
    shutil.copytree(os.path.join(w, "tb"), tmp_path / name / "tb")
  mux = plugin_event_multiplexer.EventMultiplexer()
  mux.AddRunsFromDirectory(str(tmp_path))
  mux.Reload()
  sessions = {
    run: tags
    for run, tags in mux.PluginRunToTagToContent("hparams").items()
    if "_hparams_/session_start_info" in tags
  }
  assert sorted(sessions) == [os.path.join("a", "tb"), os.path.join("b", "tb")]
