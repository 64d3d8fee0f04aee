"""DDP with 2 gloo processes on CPU: Catalyst's spawn engine and torchrun.

The end-to-end runs (both launchers at once) train the nuclei focal + Dice config (podium's
loss stack and metrics) for two stages of one epoch on 8 training tiles and 3 validation tiles
(odd: a padding sampler would count a tile twice). Each run is checked against a single-process
evaluation of its own saved checkpoint, for the weights handed from stage 1 to stage 2 on every
rank, for a run directory that only rank 0 wrote, and against the other launcher. The unit
tests fork two processes (no imports to repeat) for the engine's metric reduction and re-wrap.
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from catalyst.engines.torch import DistributedDataParallelEngine
from catalyst.metrics import AdditiveMetric
from torch import nn
from torch.utils.data import DistributedSampler

from conftest import BIN, REPO, run_two_ranks
from podium.datasets import build_segmentation_datasets
from podium.errors import PodiumError
from podium.metrics import SegmentationScores
from podium.runners import SegmentationRunner
from podium.runners.engines import DDPEngine, free_port
from podium.runners.samplers import ShardSampler
from podium.runners.segmentation import check_ddp_batch_sizes
from podium.targets import call_target

FOCAL_DICE = REPO / "configs" / "nuclei" / "unet_resnet18_focal_dice.yml"
DDP_SNIPPET = REPO / "configs" / "nuclei" / "ddp.yml"
TESTS = Path(__file__).resolve().parent
STAGES = ("warmup", "train")
TOL = 1e-5


# ------------------------------------------------------------------ helpers
def small_nuclei(nuclei_data: Path, root: Path, train: int = 8, valid: int = 3) -> Path:
    """The real nuclei tiles: `train` training tiles and `valid` (odd) validation tiles."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("images", "masks"):
        os.symlink(nuclei_data / folder, root / folder)
    split = pd.read_csv(nuclei_data / "split.csv")
    small = pd.concat(
        [split[split.split == "train"].head(train), split[split.split == "valid"].head(valid)]
    )
    small.to_csv(root / "split.csv", index=False)
    return root


def overrides(path: Path, probe_dir: Path, engine=None) -> Path:
    """A third config file: 1 epoch per stage, global batch 4, the probe callback, an engine."""
    config = {
        "stages": {
            stage: {
                "num_epochs": 1,
                "loaders": {"batch_size": 4},
                "callbacks": {"probe": {"_target_": "ddp_probe.StageProbe", "out": str(probe_dir)}},
            }
            for stage in STAGES
        }
    }
    if engine is not None:
        config["engine"] = engine
    path.write_text(yaml.safe_dump(config))
    return path


def launch(tmp: Path, data: Path, launcher: str) -> dict:
    """Start one 2-process DDP run (not waiting for it)."""
    logdir, probe = tmp / "run", tmp / "probe"
    args = [f"--args/logdir={logdir}:str", f"--data/root={data}:str"]
    if launcher == "spawn":  # Catalyst's own engine block: runs as podium's DDPEngine
        engine = {
            "_target_": "catalyst.engines.DistributedDataParallelEngine",
            "num_node_workers": 2,
            "process_group_kwargs": {"backend": "gloo"},
        }
        command = [
            BIN / "catalyst-dl",
            "run",
            "--config",
            FOCAL_DICE,
            overrides(tmp / "test.yml", probe, engine),
            *args,
        ]
    else:
        command = [
            BIN / "python",
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            BIN / "catalyst-dl",
            "run",
            "--config",
            FOCAL_DICE,
            DDP_SNIPPET,
            overrides(tmp / "test.yml", probe),
            *args,
        ]
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    )
    log = open(tmp / "output.txt", "w")
    process = subprocess.Popen(
        list(map(str, command)), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    return {
        "logdir": logdir,
        "probe": probe,
        "data": data,
        "process": process,
        "log": log,
        "tmp": tmp,
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory, nuclei_data):
    """Both launch ways, run at the same time (each is mostly single-threaded start-up)."""
    runs = {}
    for launcher in ("spawn", "torchrun"):
        tmp = tmp_path_factory.mktemp(f"ddp_{launcher}")
        runs[launcher] = launch(tmp, small_nuclei(nuclei_data, tmp / "data"), launcher)
    try:
        for run in runs.values():
            run["process"].wait(timeout=900)
    finally:
        for run in runs.values():
            if run["process"].poll() is None:
                run["process"].kill()
            run["log"].close()
    return runs


@pytest.fixture(scope="module", params=["spawn", "torchrun"])
def run(request, runs):
    run = runs[request.param]
    output = (run["tmp"] / "output.txt").read_text()
    assert run["process"].returncode == 0, output[-5000:]
    return run


@pytest.fixture(scope="module")
def predictions(run):
    """One process: the saved checkpoint's logits of the validation tiles, and the criteria.

    Forwarded in the batches the two ranks used (ShardSampler: rank 0 tiles [0, 2], rank 1
    tile [1]) with one thread, as in the workers, so even the float rounding is the same.
    """
    config = yaml.safe_load(FOCAL_DICE.read_text())
    model = call_target(config["model"], "model")
    checkpoint = torch.load(
        run["logdir"] / "checkpoints" / "last.pth", map_location="cpu", weights_only=True
    )
    model.load_state_dict(checkpoint["model_state_dict"])
    model.eval()
    valid = build_segmentation_datasets(**dict(config["data"], root=str(run["data"])))["valid"]
    logits, masks = {}, {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for batch in ([0, 2], [1]):
                out = model(torch.stack([valid[i]["image"] for i in batch]))
                for j, i in enumerate(batch):
                    logits[i], masks[i] = out[j], valid[i]["mask"]
    finally:
        torch.set_num_threads(threads)
    terms = config["stages"]["train"]["callbacks"]["loss"]["terms"]
    criteria = {
        name: (call_target(term["criterion"], name), term.get("weight", 1.0))
        for name, term in terms.items()
    }
    return {"logits": logits, "masks": masks, "criteria": criteria}


def losses(predictions, batches) -> dict:
    """Loss terms and total as sample-weighted means of per-batch values over `batches`."""
    sums, count = {}, 0
    for batch in batches:
        logits = torch.stack([predictions["logits"][i] for i in batch])
        masks = torch.stack([predictions["masks"][i] for i in batch])
        total = 0.0
        for name, (criterion, weight) in predictions["criteria"].items():
            value = float(criterion(logits, masks)) * weight
            sums[f"loss_{name}"] = sums.get(f"loss_{name}", 0.0) + value * len(batch)
            total += value
        sums["loss"] = sums.get("loss", 0.0) + total * len(batch)
        count += len(batch)
    return {key: value / count for key, value in sums.items()}


def metrics(predictions) -> dict:
    scores = SegmentationScores(activation="sigmoid", threshold=0.5)
    for i in sorted(predictions["logits"]):
        scores.update(predictions["logits"][i][None], predictions["masks"][i][None])
    return scores.compute_key_value()


def last_valid_row(logdir: Path) -> dict:
    return pd.read_csv(logdir / "logs" / "valid.csv").iloc[-1].to_dict()


# ------------------------------------------------------------------ end to end (both launchers)
def test_valid_metrics_equal_single_process_evaluation(run, predictions):
    logged = last_valid_row(run["logdir"])
    expected = metrics(predictions)
    for key in ("dice", "dice/_micro", "iou", "iou/_micro"):
        assert logged[key] == pytest.approx(expected[key], abs=TOL), key
    # per-pixel losses (focal) do not depend on the batching: the mean over the 3 tiles
    whole = losses(predictions, [[0, 1, 2]])
    assert logged["loss_focal"] == pytest.approx(whole["loss_focal"], abs=TOL)
    # batch-level losses (Dice over the batch) do: the logged value is the sample-weighted mean
    # of the batch values the ranks computed
    exact = losses(predictions, [[0, 2], [1]])
    for key in ("loss_focal", "loss_dice", "loss"):
        assert logged[key] == pytest.approx(exact[key], abs=TOL), key
    # what the test rules out: a padding DistributedSampler (rank 1 sees [1, 0]) and Catalyst's
    # mean of the per-rank means log other values
    padded = losses(predictions, [[0, 2], [1, 0]])
    per_rank = [losses(predictions, [batch])["loss_focal"] for batch in ([0, 2], [1])]
    mean_of_ranks = sum(per_rank) / 2
    assert abs(padded["loss_focal"] - logged["loss_focal"]) > 10 * TOL
    assert abs(mean_of_ranks - logged["loss_focal"]) > 10 * TOL


def _probe(run, stage, event, rank):
    return torch.load(run["probe"] / f"{stage}_{event}_rank{rank}.pt", weights_only=True)


def _assert_same_state(a, b, what):
    assert a.keys() == b.keys(), what
    for key in a:
        assert torch.equal(a[key], b[key]), f"{what}: {key}"


def test_stage_two_starts_from_stage_one_weights_on_every_rank(run):
    end = _probe(run, "warmup", "end", 0)["state"]
    saved = torch.load(run["logdir"] / "checkpoints" / "warmup.1.pth", weights_only=True)[
        "model_state_dict"
    ]
    _assert_same_state(saved, end, "checkpoint of stage 1 vs rank 0 at stage end")
    initial = _probe(run, "warmup", "start", 0)["state"]
    changed = [k for k in end if end[k].is_floating_point() and not torch.equal(end[k], initial[k])]
    assert changed  # stage 1 trained: handing over the initial weights would not pass
    for rank in (0, 1):
        start = _probe(run, "train", "start", rank)
        assert start["world_size"] == 2
        _assert_same_state(end, start["state"], f"rank {rank} at stage 2 start")


def test_only_rank_zero_writes(run):
    logdir = run["logdir"]
    assert _probe(run, "train", "start", 0)["loggers"]
    assert _probe(run, "train", "start", 1)["loggers"] == []  # rank 1 has nothing to write with
    files = [
        p.relative_to(logdir)
        for p in logdir.rglob("*")
        if p.is_file() and p.parts[len(logdir.parts)] != "code"
    ]
    assert not [f for f in files if "rank" in str(f)], files
    logs = sorted(path.name for path in (logdir / "logs").iterdir())
    assert logs == ["_epoch_.csv", "hparams.yml", "train.csv", "valid.csv"]
    for loader in ("train", "valid"):
        rows = (logdir / "logs" / f"{loader}.csv").read_text().splitlines()
        # one header, one row per epoch (a second writer would add a header or rows)
        assert len(rows) == 1 + len(STAGES) and rows[0].startswith("step,"), rows
        assert len(list((logdir / "tensorboard" / loader).iterdir())) == 1  # one events file
    assert len(list((logdir / "configs").glob("events.out.tfevents*"))) == 1  # one environment dump
    for stage in STAGES:
        overlays = list((logdir / "overlays" / stage / "epoch_1").iterdir())
        assert len(overlays) == 4  # 2 best + 2 worst
    checkpoints = list((logdir / "checkpoints").glob("*.pth"))
    assert {"best.pth", "last.pth", "warmup.1.pth", "train.1.pth"} <= {p.name for p in checkpoints}
    for path in checkpoints:
        assert "model_state_dict" in torch.load(path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------ units
@pytest.mark.parametrize("size, world", [(3, 2), (7, 3), (8, 4), (2, 2)])
def test_shard_sampler_takes_every_sample_once(size, world):
    shards = [list(ShardSampler(range(size), num_replicas=world, rank=r)) for r in range(world)]
    assert sorted(i for shard in shards for i in shard) == list(range(size))
    lengths = [len(ShardSampler(range(size), num_replicas=world, rank=r)) for r in range(world)]
    assert lengths == [len(shard) for shard in shards]
    assert max(lengths) - min(lengths) <= 1
    padded = [
        list(DistributedSampler(range(size), num_replicas=world, rank=r, shuffle=False))
        for r in range(world)
    ]
    # what torch's sampler does instead: repeats samples when the size does not divide
    assert (sum(map(len, padded)) > size) == (size % world != 0)


def _batches(rank):
    """(value, batch size) per batch: uneven counts per rank (3 batches vs 1)."""
    return [(0.9, 4), (0.8, 4), (0.7, 1)] if rank == 0 else [(0.1, 3)]


def _sync_worker(rank, port, out_dir):
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
    )
    engine = DDPEngine(backend="gloo")  # joins from the environment, as under torchrun
    meter = AdditiveMetric()
    engine.autocast_loader(None)  # loader start
    for value, size in _batches(rank):
        meter.update(value, size)
        engine.count_samples(size)
    mean, std = meter.compute()
    local = {"loss": mean, "loss/mean": mean, "loss/std": std, "accuracy": mean}
    result = {"synced": engine.sync_metrics(local)}
    engine.autocast_loader(None)  # a runner that never counts: Catalyst's plain mean
    result["plain"] = engine.sync_metrics(local)
    result["spawned"] = engine.spawn(lambda local_rank, world, x: (local_rank, world, x), "here")
    result["shard"] = list(ShardSampler(range(5)))
    # freezing / unfreezing after the engine wrapped the model (podium's Freeze/Unfreeze callbacks)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    wrapped, _, _, _ = engine.init_components(
        lambda: model, lambda: None, lambda model: None, lambda optimizer: None
    )
    grads = []
    for trainable in (False, True):
        for p in model[0].parameters():
            p.requires_grad_(trainable)
        same = engine.rewrap(wrapped)
        assert engine.rewrap(same) is same  # nothing changed since: kept
        wrapped = same
        for step in range(2):  # the second step fails when the frozen layer is still expected
            model.zero_grad()
            wrapped(torch.full((2, 4), float(rank + step))).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    result["grads"] = grads
    result["joined"] = (
        engine.joined,
        engine.rank,
        engine.world_size,
        str(engine.device),
        engine.backend,
    )
    engine.close()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def test_sync_metrics_weights_ranks_by_their_samples(tmp_path):
    run_two_ranks(_sync_worker, free_port(), str(tmp_path))
    everything = AdditiveMetric()  # one process, every batch of both ranks: the reference
    for value, size in _batches(0) + _batches(1):
        everything.update(value, size)
    mean, std = everything.compute()
    per_rank = [AdditiveMetric() for _ in range(2)]
    for rank, meter in enumerate(per_rank):
        for value, size in _batches(rank):
            meter.update(value, size)
    catalyst_mean = (per_rank[0].compute()[0] + per_rank[1].compute()[0]) / 2
    assert abs(catalyst_mean - mean) > 0.05  # the case is not trivial
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        synced = result["synced"]
        assert synced["loss"] == pytest.approx(mean, abs=1e-12)
        assert synced["loss/mean"] == pytest.approx(mean, abs=1e-12)
        assert synced["accuracy"] == pytest.approx(mean, abs=1e-12)
        assert synced["loss/std"] == pytest.approx(std, abs=1e-12)
        assert result["plain"]["loss"] == pytest.approx(catalyst_mean, abs=1e-12)
        assert result["spawned"] == (rank, 2, "here")  # inside a rank: no new processes
        assert result["shard"] == [rank, rank + 2] + ([4] if rank == 0 else [])
        assert result["joined"] == (True, rank, 2, "cpu", "gloo")
    # after each rewrap, the gradients of every trainable layer are averaged over the ranks
    grads = [
        torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)["grads"] for rank in range(2)
    ]
    assert set(grads[0][0]) == {"1.weight", "1.bias"}
    assert set(grads[0][1]) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    for phase in range(2):
        for name in grads[0][phase]:
            assert torch.equal(grads[0][phase][name], grads[1][phase][name]), (phase, name)


def test_engine_settings_are_checked():
    with pytest.raises(PodiumError, match="engine/backend must be one of auto, nccl, gloo"):
        DDPEngine(backend="ncl")
    if not torch.cuda.is_available():
        with pytest.raises(PodiumError, match="nccl needs CUDA"):
            DDPEngine(backend="nccl")
        with pytest.raises(PodiumError, match="sync_bn: true needs CUDA"):
            DDPEngine(sync_bn=True)
        with pytest.raises(PodiumError, match="engine/num_processes"):
            DDPEngine().spawn(print)  # how many processes? no GPUs to count
    assert DDPEngine(num_processes=2).backend == ("nccl" if torch.cuda.is_available() else "gloo")
    with pytest.raises(PodiumError, match="several machines"):
        DDPEngine.from_catalyst(DistributedDataParallelEngine(world_size=4, num_node_workers=2))


def test_batch_size_must_divide_by_the_world_size():
    check_ddp_batch_sizes(
        {"batch_size": 8, "loaders_params": {"valid": {"batch_size": 2}}}, "train", 2
    )
    check_ddp_batch_sizes({"batch_size": 3, "per_gpu_scaling": True}, "train", 2)
    with pytest.raises(PodiumError, match=r"stages/train/loaders/batch_size is 6: .* divide by 4"):
        check_ddp_batch_sizes({"batch_size": 6}, "train", 4)
    with pytest.raises(PodiumError, match="loaders_params/valid/batch_size is 3"):
        check_ddp_batch_sizes(
            {"batch_size": 4, "loaders_params": {"valid": {"batch_size": 3}}}, "train", 2
        )


def _config(data: Path, engine: dict) -> dict:
    config = yaml.safe_load(FOCAL_DICE.read_text())
    config["data"]["root"] = str(data)
    config["args"]["logdir"] = None
    config["engine"] = engine
    return config


def test_catalyst_ddp_engine_runs_as_podium_engine(nuclei_data):
    engine = {
        "_target_": "catalyst.engines.DistributedDataParallelEngine",
        "num_node_workers": 2,
        "port": 23456,
        "process_group_kwargs": {"backend": "gloo"},
        "ddp_kwargs": {"bucket_cap_mb": 5},
    }
    runner = SegmentationRunner(_config(nuclei_data, engine))
    got = runner.get_engine()
    assert type(got) is DDPEngine and got is runner.get_engine()
    settings = (got.backend, got.num_local_workers, got.port, got.ddp_kwargs)
    assert settings == ("gloo", 2, 23456, {"bucket_cap_mb": 5})
    assert not got.joined
    with pytest.raises(PodiumError, match='unknown key "sync_b" in engine.*did you mean "sync_bn"'):
        SegmentationRunner(
            _config(nuclei_data, {"_target_": "podium.runners.engines.DDPEngine", "sync_b": True})
        )


def test_torchrun_without_a_ddp_engine_is_refused(nuclei_data, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(PodiumError, match="one of 2 processes .* engine is DeviceEngine"):
        SegmentationRunner(_config(nuclei_data, {"_target_": "catalyst.engines.DeviceEngine"}))


def test_both_launchers_train_the_same(runs):
    """Same seed, same batches, one thread per rank: spawned workers and torchrun ranks log
    the same numbers. (With torch.multiprocessing's pickling, spawned workers shared one copy of
    the weights and every step was applied twice: this is the test that caught it.)"""
    logs = {}
    for launcher, run in runs.items():
        assert run["process"].returncode == 0, launcher
        logs[launcher] = {
            loader: pd.read_csv(run["logdir"] / "logs" / f"{loader}.csv")
            for loader in ("train", "valid")
        }
    # every key must be in both logs: a key missing from both must not pass unchecked
    keys = {
        "train": ("loss", "loss_focal", "loss_dice", "dice", "iou", "grad_norm"),
        "valid": ("loss", "loss_focal", "loss_dice", "dice", "iou"),
    }
    for loader, names in keys.items():
        spawn, torchrun = logs["spawn"][loader], logs["torchrun"][loader]
        for key in names:
            for launcher, log in (("spawn", spawn), ("torchrun", torchrun)):
                assert key in log.columns, (
                    f"{launcher} {loader}.csv has no {key}: {list(log.columns)}"
                )
            np.testing.assert_allclose(
                spawn[key], torchrun[key], rtol=1e-6, err_msg=f"{loader}/{key}"
            )


RANK_LEAVING_A_THREAD = """
import atexit, sys, threading
from pathlib import Path
from podium.runners.engines import DDPEngine

def rank(local_rank, world_size, folder):
    atexit.register(Path(folder, f"exit_handler_ran.{local_rank}").touch)
    threading.Thread(target=threading.Event().wait, daemon=False).start()  # never ends

if __name__ == "__main__":
    DDPEngine(backend="gloo", num_processes=2).spawn(rank, sys.argv[1])
"""


def test_a_finished_rank_runs_its_exit_handlers_and_ends(tmp_path):
    """A rank whose run ended exits after Python's exit handlers and nothing else: not waiting
    on threads a library left running, nor through C++ static destructors (where torch's
    distributed threads once aborted a finished rank with SIGABRT)."""
    script = tmp_path / "ranks.py"
    script.write_text(RANK_LEAVING_A_THREAD)
    process = subprocess.Popen(
        [str(BIN / "python"), str(script), str(tmp_path)], cwd=REPO, start_new_session=True
    )
    try:
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
    assert sorted(p.name for p in tmp_path.glob("exit_handler_ran.*")) == [
        "exit_handler_ran.0",
        "exit_handler_ran.1",
    ]
