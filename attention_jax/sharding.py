"""Device meshes, data-parallel placement and multi-host start-up.

Data parallelism: a 1-D mesh over the devices with axis ``data``; the batch is
split along its first axis, parameters and optimizer state are replicated, and
XLA inserts the gradient all-reduce. Every process runs the same program
(SPMD); in a multi-process launch (Slurm, TPU pods, Open MPI, or explicit
``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``) call
:func:`initialize_distributed` first. Every process computes the same global
batch and places only the rows of its own devices (:func:`put_batch`, from the
sharding's index map).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from attention_jax.errors import ConfigError

DATA = "data"


def initialize_distributed() -> None:
  """``jax.distributed.initialize()`` when launched as several processes.

  JAX auto-detects Slurm, TPU pods and Open MPI; an explicit
  ``JAX_COORDINATOR_ADDRESS`` (with ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``)
  works anywhere. A single process does nothing.
  """
  if jax.distributed.is_initialized():
    return
  explicit = "JAX_COORDINATOR_ADDRESS" in os.environ
  slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
  mpi = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
  tpu_pod = "TPU_WORKER_HOSTNAMES" in os.environ and "," in os.environ.get(
    "TPU_WORKER_HOSTNAMES", ""
  )
  if not (explicit or slurm or mpi or tpu_pod):
    return
  if explicit:
    # CPU collectives across processes (harmless for accelerator backends; the
    # backend must not be queried before initialize()).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
      coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
      num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
      process_id=int(os.environ["JAX_PROCESS_ID"]),
    )
  else:
    jax.distributed.initialize()
  logging.info(
    "jax.distributed: process %d of %d, %d local / %d global devices",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


def pick_devices(devices: list, num_devices: int = 0) -> list:
  """The mesh's devices: all (``num_devices`` 0) or the first ``num_devices``,
  taken evenly from every process (the first ``num_devices / P`` of each of
  the P processes, process by process), so every process keeps a part.

  Raises ConfigError naming ``train.num_devices`` when that cannot be done.
  """
  by_process: dict[int, list] = {}
  for d in devices:
    by_process.setdefault(d.process_index, []).append(d)
  P = len(by_process)
  if not num_devices:
    return [d for p in sorted(by_process) for d in by_process[p]]
  if num_devices > len(devices):
    raise ConfigError(
      f"config key 'train.num_devices' is {num_devices} but only {len(devices)} devices are visible"
    )
  per = num_devices // P
  fewest = min(len(v) for v in by_process.values())
  if num_devices % P or per > fewest:
    raise ConfigError(
      f"config key 'train.num_devices' is {num_devices}; with {P} processes it "
      f"must be a multiple of {P} of at most {P * fewest} (the same number of "
      "devices from each process), or 0 for all devices"
    )
  return [d for p in sorted(by_process) for d in by_process[p][:per]]


def make_mesh(num_devices: int = 0) -> Mesh:
  """A 1-D ``data`` mesh over :func:`pick_devices` (``num_devices`` 0 = all).

  Built from an explicit device array, so axes are of the Auto type (jax 0.10's
  ``make_mesh`` defaults to Explicit axes, under which ``nnx.Embed`` lookups
  fail with ``ShardingTypeError``).
  """
  return Mesh(np.asarray(pick_devices(jax.devices(), num_devices)), (DATA,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA))


def check_batch_size(batch_size: int, mesh: Mesh, key: str) -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise ConfigError(
      f"config key '{key}' ({batch_size}) must be divisible by the number of devices ({n})"
    )


def put_replicated(tree, mesh: Mesh):
  """Places a pytree of arrays on every device of ``mesh``."""
  return jax.device_put(tree, replicated(mesh))


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Shards a host batch along its first axis over the ``data`` axis.

  ``batch`` is the *global* batch (every process computes the same one). Each
  process places, on each of its devices, exactly the rows the sharding's
  index map assigns to that device (``make_array_from_callback``), whatever the
  order of devices in the mesh; no process puts another's rows on a device.
  """
  sharding = batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return {
    k: jax.make_array_from_callback(v.shape, sharding, lambda index, v=v: v[index])
    for k, v in batch.items()
  }
