"""Podium's engines: DeviceEngine (one device) and DDPEngine (Catalyst's
DistributedDataParallelEngine, launched by torchrun or by itself), both with precision,
memory format and torch.compile (`podium.models.precision.Precision`, shared by the two):

    engine:
      _target_: podium.runners.engines.DeviceEngine   # or DDPEngine
      precision: auto        # fp32 (default) | bf16 | fp16 | auto: bf16 where native, else fp32
      memory_format: auto    # contiguous (default) | channels_last | auto: with bf16 / fp16
      compile: false         # true | a torch.compile mode (reduce-overhead, max-autotune, ...)

    engine:
      _target_: podium.runners.engines.DDPEngine
      backend: auto          # auto: nccl with CUDA GPUs, gloo on CPU
      num_processes: 2       # `catalyst-dl run` only: processes to start (default: one per GPU)
      sync_bn: false         # BatchNorm -> SyncBatchNorm (CUDA only)

The engine scales the loss and steps through the fp16 GradScaler (`backward_loss`,
`optimizer_step`), exposes it as `scaler` (podium's OptimizerCallback unscales before clipping
and counts skipped steps), and keeps its state in checkpoints (`scaler`). PodiumRunner runs the
forward pass under `precision.autocast()` and casts the outputs to float32.

Two ways to start a run:

- `torchrun --nproc_per_node=N $(which catalyst-dl) run --config x.yml`: every process already
  is a rank (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). The engine
  joins the process group from the environment as soon as it is built (or reuses an initialised
  one) and never spawns; on GPUs rank i uses `cuda:LOCAL_RANK`. Catalyst's engine spawns
  workers from every rank there and overwrites RANK/MASTER_PORT: it hangs.
- `catalyst-dl run --config x.yml`: `spawn` starts `num_processes` workers on this machine
  (a free port unless `port` is given), each with torchrun's environment, so from then on both
  ways run the same code. `PodiumRunner` spawns once per run and every worker runs all
  stages, so weights, counters, seeds and open logs carry over from stage to stage. The
  runner goes to the workers as a plain pickle: Catalyst hands it over through
  torch.multiprocessing, whose pickler moves tensors into shared memory, so all its workers
  train one copy of the weights and every step is applied once per process (measured: two
  spawned workers that each add 1 to a parameter leave 2 in it).

The process group lives until `close()` (a stage end only waits for every rank). `rewrap`
builds a new DDP wrapper when freeze/unfreeze callbacks changed what trains after wrapping.

Loader metrics of Catalyst's batch-metric callbacks (CriterionCallback's `loss`, `loss/mean`,
`loss/std`, accuracy, ...) are per-process sample-weighted means; Catalyst averages them over
ranks as if every rank had seen as many samples. `sync_metrics` weights them by the samples each
rank saw in the loader (counted with `count_samples`, which PodiumRunner calls on every
batch) and pools `<key>/std` exactly, so the result equals the one-process value over the same
batches. Without counts (another runner) it falls back to Catalyst's plain mean.
"""

import atexit
import os
import pickle
import socket
import sys
import time
from datetime import timedelta
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from catalyst.engines.torch import DeviceEngine as _CatalystDeviceEngine
from catalyst.engines.torch import DistributedDataParallelEngine
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from podium import interrupts
from podium.errors import PodiumError
from podium.models.precision import Precision

__all__ = ["DeviceEngine", "DDPEngine", "BACKENDS", "torchrun_world_size", "free_port"]

BACKENDS = ("auto", "nccl", "gloo")
_ENV = ("RANK", "WORLD_SIZE")


def torchrun_world_size() -> int:
    """WORLD_SIZE when this process was started as a rank (torchrun or a spawned worker), else 0."""
    if all(key in os.environ for key in _ENV):
        return int(os.environ["WORLD_SIZE"])
    return 0


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _trainable(model: nn.Module) -> Tuple[int, ...]:
    return tuple(i for i, p in enumerate(model.parameters()) if p.requires_grad)


def _mean_key(std_key: str) -> str:
    """`loss/std` -> `loss/mean`."""
    return std_key[: -len("std")] + "mean"


def _worker(local_rank: int, payload: bytes, env: Dict[str, str], threads: int, errors):
    """Entry point of a spawned process: torchrun's environment, then `fn(rank, world, *args)`."""
    os.environ.update(env, RANK=str(local_rank), LOCAL_RANK=str(local_rank))
    if threads:
        torch.set_num_threads(threads)
    try:
        with interrupts.handled():
            fn, args = pickle.loads(payload)
            fn(local_rank, int(env["WORLD_SIZE"]), *args)
    except PodiumError as error:  # the parent re-raises it as one clear line
        errors.put(error)
        raise
    except (
        interrupts.Interrupted
    ) as stop:  # rank 0 says where the run stopped; the parent prints it
        if local_rank == 0:
            errors.put(interrupts.interrupted(stop))
        raise
    _exit_done()


def _exit_done() -> None:
    """A rank whose run ended: Python's exit handlers, then exit without C++ static
    destructors, where torch's distributed threads can still abort a finished rank
    ("terminate called without an active exception", SIGABRT) after its work is on disk."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def _stop_workers(processes, signum: int, grace: float = 3.0, timeout: float = 120.0) -> None:
    """Every worker ends: on the terminal's Ctrl-C they got the signal too; otherwise (a SIGTERM
    to this process alone) they get it from here after `grace` seconds. Past `timeout`, or on a
    second signal here, the ones left are killed."""
    try:
        _join_all(processes, grace)
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signum)
        _join_all(processes, timeout)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()


def _join_all(processes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))


def _prepared(precision: Precision, model):
    if isinstance(model, dict):
        return {key: precision.prepare(value) for key, value in model.items()}
    return precision.prepare(model)


class _PrecisionSteps:
    """Backward, optimizer step and checkpoints through the engine's `precision` (both engines)."""

    precision: Precision

    @property
    def scaler(self):
        """The fp16 GradScaler; absent otherwise (Catalyst's OptimizerCallback tests `hasattr`)."""
        if self.precision.scaler is None:
            raise AttributeError("scaler: only with precision fp16")
        return self.precision.scaler

    def backward_loss(self, loss, model, optimizer) -> None:
        self.precision.backward(loss)

    def optimizer_step(self, loss, model, optimizer) -> None:
        self.precision.step(optimizer)

    def pack_checkpoint(self, model=None, criterion=None, optimizer=None, scheduler=None, **kwargs):
        kwargs.update(self.precision.state_dict())
        return super().pack_checkpoint(model, criterion, optimizer, scheduler, **kwargs)

    def unpack_checkpoint(
        self, checkpoint, model=None, criterion=None, optimizer=None, scheduler=None, **kwargs
    ) -> None:
        """Catalyst's; the scaler's state too when the optimizer's comes back (a resume)."""
        super().unpack_checkpoint(checkpoint, model, criterion, optimizer, scheduler, **kwargs)
        if optimizer is not None:
            self.precision.load_state_dict(checkpoint)


class DeviceEngine(_PrecisionSteps, _CatalystDeviceEngine):
    """Catalyst's DeviceEngine with precision, memory format and torch.compile.

    Args:
        device: default: cuda if available, else cpu.
        precision: fp32 | bf16 | fp16 | auto.
        memory_format: contiguous | channels_last | auto.
        compile: false | true | a torch.compile mode.
        scaler: fp16: keyword arguments of `torch.amp.GradScaler` (e.g. init_scale).
    """

    def __init__(
        self,
        device: Optional[str] = None,
        precision: str = "fp32",
        memory_format: str = "contiguous",
        compile: Any = False,
        scaler: Optional[Dict[str, Any]] = None,
    ):
        super().__init__(device)
        self.precision = Precision(precision, self.device, memory_format, compile, scaler=scaler)

    def __repr__(self) -> str:
        return f"DeviceEngine(device={self.device}, {self.precision})"

    def init_components(
        self, model_fn=None, criterion_fn=None, optimizer_fn=None, scheduler_fn=None
    ):
        """Catalyst's; the model then in the memory format, compiled when asked."""
        model, criterion, optimizer, scheduler = super().init_components(
            model_fn, criterion_fn, optimizer_fn, scheduler_fn
        )
        return _prepared(self.precision, model), criterion, optimizer, scheduler


class DDPEngine(_PrecisionSteps, DistributedDataParallelEngine):
    """DistributedDataParallel for `catalyst-dl run` and for torchrun.

    Args:
        backend: `auto` (nccl when CUDA is available, else gloo), `nccl` or `gloo`.
        num_processes: processes `catalyst-dl run` starts on this machine (default: the GPU
            count). Ignored under torchrun, which decides the world size.
        sync_bn: convert BatchNorm layers to SyncBatchNorm (statistics over the global batch);
            torch implements it for CUDA only.
        address, port: rendezvous of spawned workers (default: 127.0.0.1 and a free port).
        ddp_kwargs: keyword arguments of torch's DistributedDataParallel.
        process_group_kwargs: extra keyword arguments of `init_process_group`
            (`timeout` in seconds).
        precision, memory_format, compile, scaler: as DeviceEngine's; the same on every rank
            (`auto` gives bf16 only when every rank has native bf16).
    """

    def __init__(
        self,
        backend: str = "auto",
        num_processes: Optional[int] = None,
        sync_bn: bool = False,
        address: str = "127.0.0.1",
        port: Optional[int] = None,
        ddp_kwargs: Optional[Dict[str, Any]] = None,
        process_group_kwargs: Optional[Dict[str, Any]] = None,
        precision: str = "fp32",
        memory_format: str = "contiguous",
        compile: Any = False,
        scaler: Optional[Dict[str, Any]] = None,
    ):
        if backend not in BACKENDS:
            raise PodiumError(
                f"engine/backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
            )
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl" and not torch.cuda.is_available():
            raise PodiumError(
                "engine/backend nccl needs CUDA GPUs and there are none: use auto or gloo"
            )
        if sync_bn and not torch.cuda.is_available():
            raise PodiumError(
                "engine/sync_bn: true needs CUDA GPUs (torch's SyncBatchNorm has no CPU "
                "implementation): set it to false here"
            )
        if num_processes is not None and int(num_processes) < 1:
            raise PodiumError(f"engine/num_processes must be >= 1, got {num_processes}")
        group_kwargs = dict(process_group_kwargs or {})
        if "backend" in group_kwargs:
            raise PodiumError(
                "engine: give the backend as engine/backend, not in process_group_kwargs"
            )
        if "timeout" in group_kwargs and not isinstance(group_kwargs["timeout"], timedelta):
            group_kwargs["timeout"] = timedelta(seconds=float(group_kwargs["timeout"]))
        num_processes = int(num_processes) if num_processes else None
        super().__init__(
            address=address,
            port=port,
            num_node_workers=num_processes or torch.cuda.device_count() or None,
            process_group_kwargs={"backend": backend, **group_kwargs},
            sync_bn=bool(sync_bn),
            ddp_kwargs=ddp_kwargs,
        )
        self.process_group_kwargs.pop("world_size")  # comes from the environment
        self._local_rank = -1
        self._owns_group = False
        self._loader_samples = 0
        self._precision_args = (precision, memory_format, compile)
        self._scaler_params = scaler
        self.precision = Precision(precision, _device_type(), memory_format, compile, scaler=scaler)
        if torchrun_world_size():
            self.join()

    @classmethod
    def from_catalyst(cls, engine: DistributedDataParallelEngine) -> "DDPEngine":
        """The same settings as Catalyst's engine (single machine: multi-node runs use torchrun)."""
        world_size, local = engine._world_size, engine.num_local_workers
        if world_size and local and world_size != local:
            raise PodiumError(
                "engine: DistributedDataParallelEngine over several machines (world_size "
                f"{world_size} != num_node_workers {local}): launch with torchrun --nnodes ..."
            )
        group_kwargs = dict(engine.process_group_kwargs)
        backend = group_kwargs.pop("backend", "auto")
        group_kwargs.pop("world_size", None)
        return cls(
            backend=backend,
            num_processes=engine.num_local_workers,
            sync_bn=engine._sync_bn,
            address=engine.address,
            port=engine.port,
            ddp_kwargs=engine.ddp_kwargs,
            process_group_kwargs=group_kwargs,
        )

    def __repr__(self) -> str:
        return (
            f"DDPEngine(backend={self.backend}, rank={self._rank}, world_size={self._world_size}, "
            f"device={self.device}, sync_bn={self._sync_bn}, {self.precision})"
        )

    # ------------------------------------------------------------------ processes
    @property
    def joined(self) -> bool:
        """True when this process is a rank of the process group."""
        return self._rank >= 0

    def join(self) -> None:
        """Become rank RANK of WORLD_SIZE (torchrun's environment); reuses an initialised group."""
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        if torch.cuda.is_available():
            if local_rank >= torch.cuda.device_count():
                raise PodiumError(
                    f"LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} "
                    f"GPU(s): start at most one process per GPU (--nproc_per_node)"
                )
            torch.cuda.set_device(local_rank)
            self._device = f"cuda:{local_rank}"
        else:
            self._device = "cpu"
        if not dist.is_initialized():
            dist.init_process_group(
                init_method="env://", rank=rank, world_size=world_size, **self.process_group_kwargs
            )
            self._owns_group = True
        elif dist.get_world_size() != world_size or dist.get_rank() != rank:
            raise PodiumError(
                f"a process group of rank {dist.get_rank()}/{dist.get_world_size()} exists, but "
                f"the environment says rank {rank}/{world_size}"
            )
        self._backend = dist.get_backend()
        self._rank, self._local_rank, self._world_size = rank, local_rank, world_size
        self.precision = Precision(
            self._agreed(),
            self._device,
            *self._precision_args[1:],
            where="engine",
            scaler=self._scaler_params,
        )

    def _agreed(self) -> str:
        """The precision every rank uses: `auto` gives bf16 only if all ranks have it natively."""
        requested = self._precision_args[0]
        if requested != "auto":
            return requested
        native = Precision("auto", self._device).name == "bf16"
        flag = torch.tensor([1.0 if native else 0.0], device=self._device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return "auto" if bool(flag.item()) else "fp32"

    def spawn(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run `fn(local_rank, world_size, *args)` in every process of the run.

        Inside a rank: here, now. Otherwise start `num_processes` workers on this machine.
        """
        if self.joined:
            return fn(self._local_rank, self._world_size, *args)
        nprocs = self.num_local_workers
        if not nprocs:
            raise PodiumError(
                "engine/num_processes: how many processes to start? There are no GPUs to count "
                "here (or launch with torchrun --nproc_per_node=N)"
            )
        port = self.port or free_port(self.address)
        env = {
            "MASTER_ADDR": str(self.address),
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(nprocs),
        }
        # like torchrun: split the cores between the processes, unless the user chose
        threads = 0 if "OMP_NUM_THREADS" in os.environ else max(1, (os.cpu_count() or 1) // nprocs)
        # Plain pickle, not torch.multiprocessing's: that one moves tensors into shared memory,
        # so every worker would train the same copy of the weights (each optimizer step applied
        # once per process). Catalyst's spawn engine does exactly that.
        payload = pickle.dumps((fn, args))
        errors = mp.get_context("spawn").SimpleQueue()
        workers = mp.start_processes(
            _worker,
            args=(payload, env, threads, errors),
            nprocs=nprocs,
            join=False,
            start_method="spawn",
        )
        try:
            while not workers.join():
                pass
        except interrupts.Interrupted as stop:  # Ctrl-C / SIGTERM: the whole group stops
            _stop_workers(workers.processes, interrupts.interrupted(stop).signum)
            reported = errors.get() if not errors.empty() else None
            if isinstance(reported, interrupts.Interrupted):
                raise reported from None
            if reported is None and all(p.exitcode == 0 for p in workers.processes):
                return None  # the run had ended before the signal reached a worker
            raise
        except (mp.ProcessRaisedException, mp.ProcessExitedException):
            if not errors.empty():
                raise PodiumError(str(errors.get())) from None
            raise

    def setup_process(self, rank: int = -1, world_size: int = 1) -> None:
        """Stage start: already a rank (joined when built or in `spawn`)."""
        if not self.joined:
            self.join()

    def cleanup_process(self) -> None:
        """Stage end: wait for every rank; the group stays for the next stage."""
        self.barrier()

    def close(self) -> None:
        """End of the run: destroy the process group this engine created (not a borrowed one)."""
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self._owns_group = False
        self._rank = -1

    # ------------------------------------------------------------------ model
    def init_components(
        self, model_fn=None, criterion_fn=None, optimizer_fn=None, scheduler_fn=None
    ):
        """Model on this rank's device, SyncBatchNorm if asked, wrapped in DDP; then the rest."""
        model = _prepared(self.precision, self.sync_device(model_fn()))
        if isinstance(model, dict):
            model = {key: self._wrap(value) for key, value in model.items()}
        elif isinstance(model, nn.Module):
            model = self._wrap(model)
        else:
            raise PodiumError(
                f"the model must be an nn.Module or a dict of them, got {type(model).__name__}"
            )
        criterion = self.sync_device(criterion_fn())
        optimizer = self.sync_device(optimizer_fn(model))
        scheduler = self.sync_device(scheduler_fn(optimizer))
        self.barrier()
        return model, criterion, optimizer, scheduler

    def _wrap(self, model: nn.Module) -> nn.Module:
        if isinstance(model, DistributedDataParallel):
            return model
        if self._sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return self._ddp(model)

    def _ddp(self, model: nn.Module) -> DistributedDataParallel:
        kwargs = dict(self.ddp_kwargs)
        if str(self._device).startswith("cuda"):
            kwargs.setdefault("device_ids", [self._local_rank])
        wrapped = DistributedDataParallel(model, **kwargs)
        wrapped._podium_trainable = _trainable(model)
        return wrapped

    def rewrap(self, model):
        """`model` in a new DDP wrapper if its trainable parameters changed since it was wrapped.

        DDP syncs the gradients of the parameters that required grad when it was built:
        freezing one later (podium's FreezeCallback at stage start) makes the next step fail
        with "Expected to have finished reduction in the prior iteration"; unfreezing one
        (UnfreezeCallback) leaves its gradient unsynced, so the ranks drift apart. Collective:
        every rank calls it at the same point (PodiumRunner: each training loader start).
        """
        if isinstance(model, dict):
            return {key: self.rewrap(value) for key, value in model.items()}
        if isinstance(model, DistributedDataParallel):
            if getattr(model, "_podium_trainable", None) != _trainable(model.module):
                return self._ddp(model.module)
        return model

    # ------------------------------------------------------------------ metrics
    def autocast_loader(self, loader):
        """Loader start (Catalyst calls this once per loader): the sample count restarts."""
        self._loader_samples = 0
        return loader

    def count_samples(self, batch_size: int) -> None:
        """Add a batch of this process to the current loader's count (runner, every batch)."""
        self._loader_samples += int(batch_size)

    def sync_metrics(self, metrics: Dict[str, Any]) -> Dict[str, float]:
        """Per-process loader means → the mean over all samples of all ranks (one all_reduce).

        Keys `<k>/std` next to `<k>/mean` are pooled: std²·(n-1) + n·mean² of each rank sum to
        the sample-weighted Σ of squared batch values, hence the one-process standard deviation
        (Catalyst's AdditiveMetric: weighted Welford, ddof 1).
        """
        keys = sorted(metrics)
        n = float(self._loader_samples)
        values = [float(metrics[key]) for key in keys]
        stds = {key for key in keys if key.endswith("/std") and _mean_key(key) in metrics}
        row = [n, 1.0]
        for key, value in zip(keys, values):
            if key in stds:
                mean = float(metrics[_mean_key(key)])
                row.append((value * value * (n - 1.0) + n * mean * mean) if n > 0 else 0.0)
            else:
                row.append(n * value if n > 0 else 0.0)
        row.extend(values)  # plain sums: the fallback without counts
        local = torch.tensor(row, dtype=torch.float64, device=self.device)
        dist.all_reduce(local, op=dist.ReduceOp.SUM)
        total = local.cpu().tolist()
        samples, ranks = total[0], total[1]
        weighted, plain = total[2 : 2 + len(keys)], total[2 + len(keys) :]
        if samples <= 0:  # nobody counted: Catalyst's mean of the per-rank values
            return {key: value / ranks for key, value in zip(keys, plain)}
        out = {key: value / samples for key, value in zip(keys, weighted) if key not in stds}
        for key, sum_sq in zip(keys, weighted):
            if key in stds:
                mean = out[_mean_key(key)]
                variance = max(sum_sq - samples * mean * mean, 0.0) / max(samples - 1.0, 1.0)
                out[key] = variance**0.5
        return out
