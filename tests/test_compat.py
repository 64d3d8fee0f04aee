"""podium.compat: every fix is compared against Catalyst's unpatched original."""

import json
import os
import pickle
import subprocess
import sys
import traceback
import warnings

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import podium.compat as compat
from podium.compat import (
    checkpoint,
    distributed,
    metric_aggregation,
    metrics,
    neptune_noise,
    startup,
    tensorboard,
)
from podium.compat._patching import rebind
from podium.errors import PodiumError
from podium.runners.engines import free_port
from conftest import run_two_ranks

import catalyst.utils
import catalyst.utils.distributed
from catalyst import dl
from catalyst.metrics import DiceMetric, IOUMetric
from catalyst.utils.sys import dump_environment

from tb_events import read_events, scalars  # noqa: E402

GRAD_SCALAR = "requires_grad=True to a scalar"


# ---------------------------------------------------------------- helpers


class GradScalarProbe:
    """Records where `float()` is called on a tensor that requires grad (torch warns only once
    per process, so counting the calls is the reliable test, not catching the warning)."""

    def __init__(self, monkeypatch):
        self.sites = []
        original = torch.Tensor.__float__

        def probe(tensor):
            if tensor.requires_grad:
                frame = traceback.extract_stack(limit=2)[0]
                self.sites.append(f"{frame.filename}:{frame.lineno}")
            return original(tensor)

        monkeypatch.setattr(torch.Tensor, "__float__", probe)


def train_tiny(logdir, num_epochs=1):
    """A small segmentation run on the patched training path; returns the runner."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 8, 8, generator=g)
    y = (torch.rand(8, 2, 8, 8, generator=g) > 0.5).float()
    loaders = {
        "train": DataLoader(TensorDataset(x, y), batch_size=4),
        "valid": DataLoader(TensorDataset(x, y), batch_size=4),
    }
    torch.manual_seed(0)
    model = nn.Conv2d(3, 2, 3, padding=1)
    runner = dl.SupervisedRunner(input_key="features", output_key="logits", target_key="targets")
    runner.train(
        model=model,
        criterion=nn.BCEWithLogitsLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loaders=loaders,
        num_epochs=num_epochs,
        logdir=str(logdir),
        valid_loader="valid",
        valid_metric="loss",
        minimize_valid_metric=True,
        verbose=True,  # TqdmCallback
        loggers={
            "console": dl.ConsoleLogger(),
            "csv": dl.CSVLogger(logdir=str(logdir)),
            "tb": dl.TensorboardLogger(logdir=os.path.join(logdir, "tb"), log_batch_metrics=True),
        },
        callbacks=[
            dl.CriterionCallback(input_key="logits", target_key="targets", metric_key="loss_bce"),
            dl.MetricAggregationCallback(
                metric_key="loss", metrics={"loss_bce": 1.0}, mode="weighted_sum"
            ),
            dl.IOUCallback(input_key="logits", target_key="targets"),
            dl.DiceCallback(input_key="logits", target_key="targets"),
            dl.EarlyStoppingCallback(
                patience=2, loader_key="valid", metric_key="loss", minimize=True
            ),
        ],
    )
    return runner


# ---------------------------------------------------------------- package
def _bindings():
    return {
        (name, attr): id(value)
        for name, module in list(sys.modules.items())
        if name.startswith("catalyst") and module is not None
        for attr, value in list(vars(module).items())
        if callable(value)
    }


def test_apply_is_idempotent():
    assert compat._applied
    before = _bindings()
    compat.apply()
    compat.apply()
    assert _bindings() == before


_APPLIED_ON_IMPORT = """
import sys
import podium, podium.compat as compat
assert "catalyst" not in sys.modules and not compat._applied, "import podium imports Catalyst"
{first}
import catalyst.utils
from podium.compat import checkpoint, distributed
assert compat._applied and compat.import_hooks.pending() == ["pytorch_toolbelt"]
assert catalyst.utils.all_gather is distributed.all_gather
assert catalyst.utils.load_checkpoint is checkpoint.load_checkpoint
print("patched")
"""


@pytest.mark.parametrize(
    "first",
    [
        "from catalyst import dl",
        "import catalyst.utils.misc",
        "from podium.compat import checkpoint",  # a fix module that imports Catalyst itself
    ],
)
def test_catalyst_imported_after_podium_is_patched_at_its_import(first):
    """`import podium` no longer imports Catalyst (`podium --help` starts in 0.1 s): the fixes
    apply when Catalyst is first imported, whatever imports it."""
    result = subprocess.run(
        [sys.executable, "-c", _APPLIED_ON_IMPORT.format(first=first)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0 and result.stdout.split() == ["patched"], result.stderr[-3000:]


def test_catalyst_imported_before_podium_is_patched_at_podium_import():
    code = (
        "import catalyst.utils, podium.compat as compat; from podium.compat import distributed; "
        "assert compat._applied and catalyst.utils.all_gather is distributed.all_gather; "
        "print('patched')"
    )
    env = dict(os.environ, PODIUM_STARTUP_HOOK="0")  # the hook would import podium first
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=240
    )
    assert result.returncode == 0 and result.stdout.split() == ["patched"], result.stderr[-3000:]


def test_rebind_replaces_by_identity_once(monkeypatch):
    import types

    def old():
        pass

    def new():
        pass

    fake = types.ModuleType("catalyst._podium_fake")
    fake.a, fake.b, fake.other = old, old, print
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    assert rebind(old, new) == 2
    assert (fake.a, fake.b, fake.other) == (new, new, print)
    assert rebind(old, new) == 0


# ---------------------------------------------------------------- 1. DDP metric sync device
def test_all_gather_is_replaced_everywhere():
    import catalyst.metrics._auc as auc
    import catalyst.metrics._classification as classification
    import catalyst.metrics._confusion_matrix as confusion
    import catalyst.metrics._segmentation as segmentation

    for module in (
        catalyst.utils.distributed,
        catalyst.utils,
        segmentation,
        classification,
        confusion,
        auc,
    ):
        assert module.all_gather is distributed.all_gather, module.__name__
    assert distributed.original_all_gather is not distributed.all_gather


def _ddp_worker(rank, port, out_dir):
    g = torch.Generator().manual_seed(1)
    outputs = torch.rand(8, 3, 6, 6, generator=g)
    targets = (torch.rand(8, 3, 6, 6, generator=g) > 0.5).float()
    expected = {}
    for cls in (IOUMetric, DiceMetric):  # single-process reference, before the group exists
        metric = cls(compute_per_class_metrics=True)
        metric.update(outputs, targets)
        expected[cls.__name__] = metric.compute()

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    result = {"expected": expected, "got": {}}
    # payloads of different sizes exercise the padding
    result["gathered"] = distributed.all_gather({"rank": rank, "t": torch.arange(rank + 3)})
    for cls in (IOUMetric, DiceMetric):
        metric = cls(compute_per_class_metrics=True)
        metric.reset()  # callbacks reset on loader start: that is when the backend is read
        assert metric._ddp_backend == "ddp"
        metric.update(outputs[rank::2], targets[rank::2])  # each rank sees half the batch
        result["got"][cls.__name__] = metric.compute()
    try:
        distributed.original_all_gather(rank)
        result["original_error"] = None
    except Exception as e:  # noqa: BLE001
        result["original_error"] = f"{type(e).__name__}: {e}"
    dist.barrier()
    dist.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def test_ddp_metrics_sync_on_gloo(tmp_path):
    run_two_ranks(_ddp_worker, free_port(), str(tmp_path), start_method="spawn")
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        gathered = result["gathered"]
        assert [item["rank"] for item in gathered] == [0, 1]
        assert torch.equal(gathered[1]["t"], torch.arange(4))
        for name, (per_class, micro, macro, _) in result["got"].items():
            ref_per_class, ref_micro, ref_macro, _ = result["expected"][name]
            flat = torch.stack([t.reshape(()) for t in per_class])  # ddp path gives shape (1,)
            assert torch.allclose(flat, torch.stack(ref_per_class)), name
            assert float(micro) == pytest.approx(float(ref_micro)), name
            assert float(macro) == pytest.approx(float(ref_macro)), name
        # Catalyst's own all_gather cannot run on a CPU process group
        error = result["original_error"]
        assert error is not None and ("CUDA" in error or "NVIDIA" in error), error


# ---------------------------------------------------------------- 2. + 4. + 5. training path
@pytest.fixture(scope="module")
def patched_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as mp_, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probe = GradScalarProbe(mp_)
        runner = train_tiny(logdir)
    return {"logdir": str(logdir), "runner": runner, "sites": probe.sites, "warnings": caught}


def test_no_float_of_grad_tensors_in_training(patched_run, tmp_path, monkeypatch):
    assert patched_run["sites"] == []
    assert not [w for w in patched_run["warnings"] if GRAD_SCALAR in str(w.message)]
    # the same run with Catalyst's originals converts grad tensors in all three places
    for (owner, name), original in metrics.ORIGINALS.items():
        monkeypatch.setattr(owner, name, original)
    probe = GradScalarProbe(monkeypatch)
    train_tiny(tmp_path)
    files = {
        os.path.relpath(site.rsplit(":", 1)[0], os.path.dirname(catalyst.__file__))
        for site in probe.sites
    }
    assert files == {"metrics/_functional_metric.py", "loggers/tensorboard.py", "callbacks/misc.py"}


def test_tensorboard_events_hold_catalyst_scalars(patched_run, tmp_path):
    values = scalars(os.path.join(patched_run["logdir"], "tb"))
    epoch_metrics = patched_run["runner"].epoch_metrics
    for loader in ("train", "valid"):
        for key in ("loss", "iou", "dice"):
            logged = values[(loader, f"{key}/epoch", 1)]
            assert logged == pytest.approx(epoch_metrics[loader][key], rel=1e-6)
    batch = [
        v for (folder, tag, _), v in values.items() if folder == "train" and tag == "loss/batch"
    ]
    assert len(batch) == 2 and all(v > 0 for v in batch)
    # dump_environment writes the config as a text summary
    dump_environment(str(tmp_path), config={"model": {"encoder": "resnet18"}}, configs_path=[])
    texts = {
        v.tag: v.tensor.string_val[0].decode()
        for _, event in read_events(str(tmp_path))
        for v in event.summary.value
        if v.HasField("tensor")
    }
    assert "resnet18" in texts["_config/text_summary"]


def test_tensorboardx_version_check():
    tensorboard.check()  # the installed one is fine
    tensorboard.check("2.6.5")
    with pytest.raises(ImportError, match=r"tensorboardX >= 2\.6 \(found 2\.2\.0\)"):
        tensorboard.check("2.2.0")


# ---------------------------------------------------------------- 5. checkpoints
def test_metric_aggregation_weighted_mean_is_the_weighted_mean():
    """(1·2 + 3·5) / (1 + 3) = 4.25 at batch and loader scope; Catalyst's own constructor raises
    a TypeError for this mode, and past that line it would give the plain sum 7."""
    from types import SimpleNamespace

    from catalyst.callbacks import MetricAggregationCallback

    runner = SimpleNamespace(device="cpu")
    weights = {"loss_bce": 1.0, "loss_dice": 3.0}
    for scope in ("batch", "loader"):
        callback = MetricAggregationCallback(
            "loss", metrics=weights, mode="weighted_mean", scope=scope
        )
        logged = {
            "loss_bce": torch.tensor(2.0),
            "loss_dice": torch.tensor(5.0),
            "iou": torch.tensor(0.5),
        }
        callback._process_metrics(scope, logged, runner)
        assert float(logged["loss"]) == pytest.approx(4.25, abs=1e-6), scope
    with pytest.raises(TypeError):
        metric_aggregation.original_init(
            MetricAggregationCallback.__new__(MetricAggregationCallback),
            "loss",
            metrics=weights,
            mode="weighted_mean",
        )
    with pytest.raises(PodiumError, match="sum to 0"):
        MetricAggregationCallback("loss", metrics={"a": 1.0, "b": -1.0}, mode="weighted_mean")


def test_catalyst_checkpoints_load_weights_only(patched_run):
    folder = os.path.join(patched_run["logdir"], "checkpoints")
    full = catalyst.utils.load_checkpoint(os.path.join(folder, "last_full.pth"))
    assert {"model_state_dict", "optimizer_state_dict", "epoch_metrics"} <= set(full)
    assert not [f for f in os.listdir(folder) if f.endswith(".tmp")]


def _half_then_fail(obj, f, *args, **kwargs):
    if isinstance(f, (str, os.PathLike)):
        f = open(f, "wb")
    f.write(b"half a checkpoint")
    f.flush()
    raise OSError("disk full")


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    engine = dl.DeviceEngine("cpu")
    path = tmp_path / "last_full.pth"
    old = tmp_path / "old.pth"
    engine.save_checkpoint({"w": torch.ones(3)}, str(path))
    engine.save_checkpoint({"w": torch.ones(3)}, str(old))

    monkeypatch.setattr(torch, "save", _half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        engine.save_checkpoint({"w": torch.zeros(3)}, str(path))
    with pytest.raises(OSError, match="disk full"):
        checkpoint.original_save({"w": torch.zeros(3)}, str(old))
    monkeypatch.undo()

    assert sorted(os.listdir(tmp_path)) == ["last_full.pth", "old.pth"]  # no temp litter
    assert torch.equal(engine.load_checkpoint(str(path))["w"], torch.ones(3))
    # Catalyst's plain torch.save left a truncated file: not a zip, and b"ha" unpickles as a
    # memo lookup (BINGET) of key 97 that was never stored
    with pytest.raises(KeyError):
        torch.load(old, weights_only=True)


def test_best_and_last_are_atomic_links_or_copies(tmp_path, monkeypatch):
    """CheckpointCallback makes best.pth / last.pth from stage.N.pth. Catalyst copies them with
    shutil.copyfile: a copy that dies half-way leaves best.pth truncated, and every epoch
    re-writes the bytes. podium hard-links them (atomic, nothing copied); on a filesystem without
    hard links it copies through a temp file, so the previous best.pth stays whole."""
    import errno
    import shutil

    import catalyst.callbacks.checkpoint as callback_module

    runner = type("Runner", (), {"engine": dl.DeviceEngine("cpu")})()
    callback_module._save_checkpoint({"w": torch.ones(3)}, runner, tmp_path, "s.1", True, True)
    for name in ("best.pth", "last.pth"):
        assert os.path.samefile(tmp_path / name, tmp_path / "s.1.pth"), name  # a link, not a copy
    callback_module._save_checkpoint(
        {"w": torch.full((3,), 2.0)}, runner, tmp_path, "s.2", False, True
    )
    os.remove(tmp_path / "s.1.pth")  # Catalyst's top-k clean-up removes the linked file
    assert torch.equal(torch.load(tmp_path / "best.pth", weights_only=True)["w"], torch.ones(3))
    assert torch.equal(
        torch.load(tmp_path / "last.pth", weights_only=True)["w"], torch.full((3,), 2.0)
    )
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]

    def no_hard_links(source, target):
        raise OSError(errno.EPERM, "Operation not permitted")

    def half_then_fail(src, dst, *args, **kwargs):
        dst.write(src.read(50))
        raise OSError("disk full")

    def half_copyfile(src, dst, *args, **kwargs):
        with open(src, "rb") as fsrc, open(dst, "wb") as fdst:
            half_then_fail(fsrc, fdst)

    monkeypatch.setattr(os, "link", no_hard_links)
    monkeypatch.setattr(shutil, "copyfileobj", half_then_fail)
    monkeypatch.setattr(shutil, "copyfile", half_copyfile)
    with pytest.raises(OSError, match="disk full"):
        callback_module._save_checkpoint({"w": torch.zeros(3)}, runner, tmp_path, "s.3", True)
    assert torch.equal(torch.load(tmp_path / "best.pth", weights_only=True)["w"], torch.ones(3))
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]

    with pytest.raises(OSError, match="disk full"):
        checkpoint.original_callback_save({"w": torch.zeros(3)}, runner, tmp_path, "s.4", True)
    # the unpatched copy truncated best.pth: a zip archive without its central directory
    with pytest.raises(RuntimeError, match="central directory"):
        torch.load(tmp_path / "best.pth", weights_only=True)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_load_refuses_pickled_code(tmp_path, monkeypatch):
    marker = str(tmp_path / "code-ran")
    path = str(tmp_path / "evil.pth")
    torch.save({"model_state_dict": {}, "extra": _Payload(marker)}, path)
    # torch's weights_only default can be switched off from the environment
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checkpoint.original_load(path)
    assert os.path.isdir(marker)  # Catalyst's loader ran the payload
    os.rmdir(marker)
    with pytest.raises(pickle.UnpicklingError):
        dl.DeviceEngine("cpu").load_checkpoint(path)
    assert not os.path.exists(marker)


# ---------------------------------------------------------------- 3. neptune import noise
def test_startup_hook_silences_neptune_import_warning():
    path = startup.install()
    assert startup.install() == path  # idempotent
    with open(path) as f:
        assert f.read() == startup.HOOK
    assert startup.MESSAGE == neptune_noise.MESSAGE
    assert (
        "podium" not in startup.HOOK.split(";")[0] and "neptune" not in startup.HOOK.split(";")[0]
    )

    def run(code, **env):
        return subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    hooked = run("import catalyst")
    # the statement catalyst/settings.py runs (lighter than `import catalyst`, same warning)
    unhooked = run("import neptune.new", PODIUM_STARTUP_HOOK="0")
    podium_first = run("import podium.compat, catalyst", PODIUM_STARTUP_HOOK="0")
    errs = {}
    for name, proc in (("hooked", hooked), ("unhooked", unhooked), ("podium_first", podium_first)):
        _, errs[name] = proc.communicate(timeout=120)
        assert proc.returncode == 0, errs[name]
    assert "NeptuneDeprecationWarning" in errs["unhooked"]  # the hook is what silences it
    assert "NeptuneDeprecationWarning" not in errs["hooked"], errs["hooked"]
    assert "NeptuneDeprecationWarning" not in errs["podium_first"], errs["podium_first"]


def test_toolbelt_import_is_quiet():
    """Building a podium model prints none of toolbelt's import-time FutureWarnings; importing
    toolbelt before podium (so before its filters) still does — the filters are what quiet it."""
    toolbelt = "import pytorch_toolbelt.modules.encoders.timm, pytorch_toolbelt.losses"
    build = "from podium.models import build_segmentation_model as b; b(in_channels=1)"
    quiet = subprocess.run(
        [sys.executable, "-c", f"import podium; {toolbelt}; {build}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    noisy = subprocess.run(
        [sys.executable, "-c", f"{toolbelt}; {build}"], capture_output=True, text=True, timeout=120
    )
    assert quiet.returncode == 0 and noisy.returncode == 0, quiet.stderr + noisy.stderr
    assert "FutureWarning" in noisy.stderr
    assert "FutureWarning" not in quiet.stderr, quiet.stderr


def _two_config_files(tmp_path):
    from pathlib import Path

    nuclei = Path(__file__).resolve().parents[1] / "configs" / "nuclei" / "unet_resnet18.yml"
    extra = tmp_path / "extra.yml"
    extra.write_text("stages:\n  train:\n    num_epochs: 3\nloggers:\n  csv: null\n")
    return ["--config", str(nuclei), str(extra)]


def test_two_config_files_merge(tmp_path, monkeypatch):
    """`catalyst-dl run --config a.yml b.yml` merges b into a (Catalyst's merge_dicts needs
    `collections.Mapping`, gone since Python 3.10): without the fix it raises AttributeError."""
    import collections

    import catalyst.utils.misc as misc
    from catalyst.dl.scripts._misc import parse_args_uargs
    from catalyst.dl.scripts.run import parse_args

    monkeypatch.setattr(sys, "argv", ["catalyst-dl", *_two_config_files(tmp_path)])
    args, unknown = parse_args()
    _, config = parse_args_uargs(args, unknown)
    assert config["stages"]["train"]["num_epochs"] == 3
    assert config["stages"]["train"]["optimizer"]  # the rest of the stage is kept
    assert config["stages"]["warmup"]["num_epochs"] == 2
    assert config["loggers"]["csv"] is None and "tensorboard" in config["loggers"]

    monkeypatch.setattr(misc, "collections", collections)
    with pytest.raises(AttributeError, match="Mapping"):
        parse_args_uargs(args, unknown)


def test_catalyst_dl_merges_two_config_files(tmp_path, nuclei_data):
    """The real command: Catalyst merges the files before the config names podium, so the
    startup hook imports podium (and its fixes) first. The second file breaks the encoder on
    purpose: podium's own error proves the merged config reached the runner, in seconds."""
    from conftest import NUCLEI_CONFIG, run_command

    extra = tmp_path / "extra.yml"
    extra.write_text("model:\n  encoder: resnet_nope\n")
    result = run_command(
        "catalyst-dl",
        "run",
        "--config",
        NUCLEI_CONFIG,
        extra,
        f"--args/logdir={tmp_path / 'run'}:str",
        f"--data/root={nuclei_data}:str",
    )
    assert result.returncode != 0
    assert "Mapping" not in result.stderr, result.stderr[-2000:]
    assert "podium: error:" in result.stderr and "resnet_nope" in result.stderr, result.stderr[
        -2000:
    ]


def _load(tmp_path, monkeypatch, text):
    from catalyst.dl.scripts import _misc
    from catalyst.dl.scripts.run import parse_args

    path = tmp_path / "config.yml"
    path.write_text(text)
    monkeypatch.setattr(sys, "argv", ["catalyst-dl", "--config", str(path)])
    args, unknown = parse_args()
    return _misc.parse_args_uargs, args, unknown, path


def test_yaml_error_names_file_line_and_column(tmp_path, monkeypatch):
    from podium.errors import PodiumError

    parse, args, unknown, path = _load(tmp_path, monkeypatch, "args:\n  seed: [42\nstages: {}\n")
    with pytest.raises(PodiumError, match=rf"config {path}: invalid YAML at line 3, column 7"):
        parse(args, unknown)
    import yaml

    with pytest.raises(yaml.YAMLError):  # what Catalyst alone raises: a parser traceback
        parse.__wrapped__(args, unknown)


def test_unknown_target_names_the_key_path(tmp_path, monkeypatch):
    from podium.errors import PodiumError

    text = "stages:\n  train:\n    optimizer: {_target_: torch.optim.AdamWW, lr: 0.1}\n"
    parse, args, unknown, _ = _load(tmp_path, monkeypatch, text)
    with pytest.raises(
        PodiumError,
        match=r'stages/train/optimizer/_target_ "torch.optim.AdamWW" '
        r'cannot be imported \(did you mean "AdamW"\?\)',
    ):
        parse(args, unknown)
    parse.__wrapped__(args, unknown)  # Catalyst alone reads it: the error would come much later


def test_safe_targets_refuses_other_packages_before_importing(tmp_path, monkeypatch):
    """PODIUM_SAFE_TARGETS=1: a `_target_` outside the allow-list is refused and never imported."""
    from podium.errors import PodiumError

    marker = tmp_path / "imported"
    (tmp_path / "sidefx_module.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef thing():\n    return 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    text = (
        "stages:\n  train:\n    callbacks:\n      x: {_target_: sidefx_module.thing}\n"
        "      ok: {_target_: catalyst.callbacks.CriterionCallback}\n"
        "      short: {_target_: CriterionCallback}\n"
    )
    parse, args, unknown, _ = _load(tmp_path, monkeypatch, text)
    monkeypatch.setenv("PODIUM_SAFE_TARGETS", "1")
    with pytest.raises(
        PodiumError,
        match=r"stages/train/callbacks/x/_target_ \"sidefx_module.thing\" "
        r"is not allowed with PODIUM_SAFE_TARGETS=1",
    ):
        parse(args, unknown)
    assert not marker.exists()
    monkeypatch.setenv("PODIUM_SAFE_TARGETS", "0")
    parse(args, unknown)  # configs are code: by default any importable callable is fine
    assert marker.exists()


@pytest.mark.parametrize(
    "yaml_seed, flags, expected",
    [
        (7, [], 7),  # the config's args/seed (Catalyst alone: 42)
        (7, ["--seed", "3"], 3),  # --seed wins
        (None, [], 42),  # neither: Catalyst's default
    ],
)
def test_catalyst_dl_run_uses_the_config_seed(tmp_path, monkeypatch, yaml_seed, flags, expected):
    from catalyst.dl.scripts import _misc
    from catalyst.dl.scripts.run import parse_args

    path = tmp_path / "config.yml"
    seed = f"  seed: {yaml_seed}\n" if yaml_seed is not None else ""
    path.write_text(
        "args:\n  logdir: logs/x\n"
        + seed
        + "runner: {_target_: catalyst.runners.SupervisedConfigRunner}\n"
    )
    monkeypatch.setattr(sys, "argv", ["catalyst-dl", "--config", str(path), *flags])
    args, unknown = parse_args()
    args, config = _misc.parse_args_uargs(args, unknown)
    assert args.seed == expected
    assert config["args"]["seed"] == expected


IRI_SAMPLES = ["http://example.com/ä", "http://exa mple", "/relative/x", "urn:isbn:0451450523", ""]


def _iri_answers(prelude: str) -> list:
    """[rfc3987_syntax's parsers built before the first check?, jsonschema's iri answers]."""
    code = (
        f"import json, sys{prelude}; from jsonschema import FormatChecker; "
        "built = 'rfc3987_syntax.syntax_helpers' in sys.modules; checker = FormatChecker(); "
        f"answers = [checker.conforms(s, f) for s in {IRI_SAMPLES!r} "
        "for f in ('iri', 'iri-reference')]; print(json.dumps([built, answers]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_rfc3987_syntax_is_built_on_first_use_with_the_same_answers():
    """`import podium` (so catalyst → neptune → jsonschema) leaves rfc3987_syntax's Lark parsers
    unbuilt — seconds of every start-up — and jsonschema's iri checks answer as without it."""
    built_without, answers_without = _iri_answers("")
    built_with, answers_with = _iri_answers("; import podium")
    assert built_without is True  # plain jsonschema builds them at import
    assert built_with is False
    assert answers_with == answers_without and True in answers_with and False in answers_with
