"""Bad input — the catalogue (docs/bad-input.md), one test per case.

Every case runs what a user runs: `catalyst-dl run` / `podium ...` as a subprocess (the `cli`
tests: the exit status and stderr the user sees), or — where the ~5 s start-up would dominate —
the same entry point in this process (`catalyst.dl.scripts.run.main`, `podium.cli.main.main`),
whose PodiumError is exactly the line the command prints (`podium.errors._format`, which the
excepthook uses). A real process runs once per command (`cli_config[yaml_syntax_error]`,
`cli_predict_write_fails…`) and where the case needs one: a file-size limit, a loader worker,
what Python does at exit. Each asserts:
- exit status 1 (in-process: a PodiumError, which the commands turn into exit 1);
- ONE line `podium: error: ...` naming the culprit (file / key / value) and what was expected,
  and no Python traceback;
- nothing written before is lost: the existing run directory the command was pointed at (config
  cases), the data folder, an existing predictions folder or checkpoint are untouched.
Shared: one tiny real run (8 training tiles, 1 + 1 epochs) and one prediction of it.
Data-layer cases at the dataset level are in test_bad_data.py (same catalogue).
"""

import hashlib
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import BIN, NUCLEI_CONFIG, REPO
from podium.cli.main import main as podium_main
from podium.errors import PodiumError, _format
from tracking_helpers import run_in_process, tiny_nuclei

SHORT = ("--stages/warmup/num_epochs=1:int", "--stages/train/num_epochs=1:int")


# ---------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def tiny(nuclei_data, tmp_path_factory):
    """The real nuclei tiles: 8 training tiles (one batch) and the 4 validation tiles."""
    return tiny_nuclei(nuclei_data, tmp_path_factory.mktemp("bad_input") / "tiny")


@pytest.fixture(scope="module")
def run_dir(tiny, tmp_path_factory):
    """A finished run of the nuclei config (in this process: no start-up cost)."""
    logdir = tmp_path_factory.mktemp("bad_input_run") / "run"
    run_in_process(logdir, tiny, NUCLEI_CONFIG)
    assert (logdir / "checkpoints" / "best.pth").is_file()
    return logdir


@pytest.fixture(scope="module")
def predictions(run_dir, tiny, tmp_path_factory):
    """A finished `podium predict` of the run: the folder a failed prediction must not touch."""
    out = tmp_path_factory.mktemp("bad_input_predictions") / "preds"
    assert predict("--run", run_dir, "--data", tiny, "--split", "valid", "--out", out) == 0
    assert (out / "metrics.json").is_file()
    return out


def snapshot(*paths) -> dict:
    """Every file below `paths`: size, mtime, inode (a rewrite or atomic replace changes them)
    and, for files up to 4 MB, the SHA-256 of its bytes (checkpoints are 57-170 MB)."""
    state = {}
    for root in map(Path, paths):
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            stat = path.stat()
            digest = (
                hashlib.sha256(path.read_bytes()).hexdigest() if stat.st_size <= 4 << 20 else None
            )
            state[str(path)] = (stat.st_size, stat.st_mtime_ns, stat.st_ino, digest)
    return state


def cli(*args, env=None, limit_file_size=None) -> subprocess.CompletedProcess:
    """A console script of the venv (catalyst-dl, podium), as a user runs it."""

    def limits():
        if limit_file_size:  # Python ignores SIGXFSZ: writes past the limit fail with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    return subprocess.run(
        [str(BIN / args[0]), *map(str, args[1:])],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
        preexec_fn=limits,
        timeout=600,
    )


def assert_cli_error(result, *culprits) -> str:
    """Exit 1, no traceback, exactly one `podium: error:` line holding every culprit."""
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("podium: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    for culprit in culprits:
        assert culprit in errors[0], errors[0]
    return errors[0]


def assert_message(message: str, *culprits) -> None:
    """The line a command prints for this error: one line, holding every culprit."""
    assert message and "\n" not in message.strip() and "Traceback" not in message, message
    for culprit in culprits:
        assert culprit in message, message


def catalyst_error(*argv) -> str:
    """`catalyst-dl run ARGV` in this process: the `podium: error:` message it ends with."""
    from catalyst.dl.scripts.run import main, parse_args

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["catalyst-dl", *map(str, argv)])
        args, unknown = parse_args()
        with pytest.raises(Exception) as caught:
            main(args, unknown)
    message = _format(caught.value)  # what the excepthook prints; None: a raw traceback
    assert message is not None, repr(caught.value)
    return message


def podium_error(capsys, *argv) -> str:
    """`podium ARGV` in this process: exit 1 and its single stderr line, without the prefix."""
    capsys.readouterr()
    assert podium_main([*map(str, argv)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("podium: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0][len("podium: error: ") :]


def predict(*args) -> int:
    return podium_main(["predict", "--no-progress", *map(str, args)])


def config_file(tmp_path, edit=None, text=None) -> Path:
    """The nuclei config with `edit(config)` applied (or raw `text`), written to tmp."""
    path = tmp_path / "config.yml"
    if text is None:
        config = yaml.safe_load(NUCLEI_CONFIG.read_text())
        if edit is not None:
            edit(config)
        text = yaml.safe_dump(config, sort_keys=False)
    path.write_text(text)
    return path


def data_variant(tiny, root: Path) -> Path:
    """A copy of the tiny data whose files are symlinks, so a case can break one file."""
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
        for path in (tiny / folder).iterdir():
            (root / folder / path.name).symlink_to(path.resolve())
    shutil.copy(tiny / "split.csv", root / "split.csv")
    return root


def first_train_name(root: Path) -> str:
    return next(
        line.split(",")[0]
        for line in (root / "split.csv").read_text().splitlines()[1:]
        if line.endswith(",train")
    )


class CodeCarrier:
    """A pickle that creates `marker` when unpickled without weights_only."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def evil_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint carrying code — proven: an unsafe load runs it (and creates `marker`)."""
    torch.save({"model_state_dict": {"w": torch.zeros(1)}, "extra": CodeCarrier(marker)}, path)
    torch.load(path, weights_only=False)
    assert marker.exists()  # the payload works ...
    marker.unlink()  # ... so its absence after the command proves it never ran
    return path


# ---------------------------------------------------------------------------- configs, real CLI
def _yaml_syntax(tmp_path):
    text = NUCLEI_CONFIG.read_text().replace("  seed: 42", "  seed: [42", 1)
    path = config_file(tmp_path, text=text)
    line = text.splitlines().index("  seed: [42") + 2  # the parser stops on the next line
    return ["--config", path], [str(path), f"invalid YAML at line {line}, column"]


CLI_CONFIG_CASES = {
    "yaml_syntax_error": _yaml_syntax,
    "unknown_target": lambda tmp_path: (
        [
            "--config",
            NUCLEI_CONFIG,
            "--stages/warmup/callbacks/checkpoint/_target_=catalyst.callbacks.CheckpointCalback:str",
        ],
        [
            'stages/warmup/callbacks/checkpoint/_target_ "catalyst.callbacks.CheckpointCalback" '
            'cannot be imported (did you mean "CheckpointCallback"?)'
        ],
    ),
    "wrong_type_num_epochs": lambda tmp_path: (
        ["--config", NUCLEI_CONFIG, "--stages/warmup/num_epochs=two:str"],
        ["stages/warmup/num_epochs must be a whole number >= 0, got 'two'"],
    ),
    "absent_loader": lambda tmp_path: (
        ["--config", NUCLEI_CONFIG, "--stages/warmup/callbacks/checkpoint/loader_key=valdi:str"],
        [
            'stages/warmup/callbacks/checkpoint/loader_key "valdi" is not a loader of stage warmup',
            'did you mean "valid"',
            "expected one of: train, valid",
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(CLI_CONFIG_CASES))
def test_cli_config(case, tmp_path, run_dir, tiny):
    """`catalyst-dl run` on a broken config, pointed at an existing run: it stays untouched.
    The YAML syntax error runs as the user's process does (exit status, stderr); the other
    cases, past the same loading, in this process (the line `_format` gives is what it prints)."""
    args, culprits = CLI_CONFIG_CASES[case](tmp_path)
    before = snapshot(run_dir, tiny)
    argv = [f"--args/logdir={run_dir}:str", f"--data/root={tiny}:str", *SHORT, *args]
    if case == "yaml_syntax_error":  # the case's overrides last: they win
        assert_cli_error(cli("catalyst-dl", "run", *argv), *culprits)
    else:
        assert_message(catalyst_error(*argv), *culprits)
    assert snapshot(run_dir, tiny) == before


def test_safe_targets_refuses_a_target_outside_the_allow_list(tmp_path, run_dir, tiny, monkeypatch):
    """PODIUM_SAFE_TARGETS=1 (configs you did not write): os.system is refused, never imported
    (in this process: the variable is read when the config is checked)."""
    monkeypatch.setenv("PODIUM_SAFE_TARGETS", "1")
    before = snapshot(run_dir, tiny)
    message = catalyst_error(
        "--config",
        NUCLEI_CONFIG,
        f"--args/logdir={run_dir}:str",
        f"--data/root={tiny}:str",
        "--stages/warmup/callbacks/x/_target_=os.system:str",
    )
    assert_message(
        message,
        'stages/warmup/callbacks/x/_target_ "os.system" is not allowed with PODIUM_SAFE_TARGETS=1',
        "allowed packages: torch, catalyst",
    )
    assert snapshot(run_dir, tiny) == before


def test_logdir_below_a_file(tmp_path, tiny):
    """A disk write that cannot happen (a file where a folder is expected): refused before any
    write, the file is untouched."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("my notes\n")
    message = catalyst_error(
        "--config",
        NUCLEI_CONFIG,
        f"--args/logdir={blocker / 'run'}:str",
        f"--data/root={tiny}:str",
        *SHORT,
    )
    assert_message(
        message,
        f"args/logdir {blocker / 'run'} cannot be created: {blocker} is a file",
        "expected a folder path",
    )
    assert blocker.read_text() == "my notes\n" and sorted(os.listdir(tmp_path)) == ["notes.txt"]


# ---------------------------------------------------------------------------- configs, in-process
def _drop(*keys):
    def edit(config):
        block = config
        for key in keys[:-1]:
            block = block[key]
        del block[keys[-1]]

    return edit


def _set(value, *keys):
    def edit(config):
        block = config
        for key in keys[:-1]:
            block = block[key]
        block[keys[-1]] = value

    return edit


def _edit_all_stages(function):
    def edit(config):
        for stage in config["stages"].values():
            function(stage)

    return edit


# id: (edit of the config or raw text, overrides, culprits)
CONFIG_CASES = {
    "misspelled_model_key": (
        None,
        ["--model/encodr=resnet18:str"],
        ['unknown key "encodr" in model (did you mean "encoder"?)'],
    ),
    "misspelled_data_key": (None, ["--data/roots=data:str"], ['"roots"', 'did you mean "root"']),
    "misspelled_stage_key": (
        None,
        ["--stages/warmup/freeze_encodr=True:bool"],
        ['unknown key "freeze_encodr" in stages/warmup (did you mean "freeze_encoder"?)'],
    ),
    "misspelled_top_level_key": (
        None,
        ["--modle/encoder=resnet18:str"],
        ['unknown key "modle" in the config (did you mean "model"?)'],
    ),
    "misspelled_callback_argument": (
        None,
        ["--stages/warmup/callbacks/checkpoint/metrc_key=dice:str"],
        [
            'unknown key "metrc_key" in stages/warmup/callbacks/checkpoint '
            '(did you mean "metric_key"?); CheckpointCallback accepts:'
        ],
    ),
    "misspelled_optimizer_argument": (
        None,
        ["--stages/warmup/optimizer/weight_decya=0.1:float"],
        [
            'unknown key "weight_decya" in stages/warmup/optimizer '
            '(did you mean "weight_decay"?); AdamW accepts:'
        ],
    ),
    "misspelled_criterion_argument": (
        None,
        ["--stages/warmup/criterion/dice/mdoe=binary:str"],
        ['unknown key "mdoe" in stages/warmup/criterion/dice (did you mean "mode"?)'],
    ),
    "lr_is_a_string": (
        NUCLEI_CONFIG.read_text().replace("lr: 0.001", 'lr: "1e-3"', 1),
        [],
        ["stages/warmup/optimizer/lr must be a number > 0, got '1e-3' (a string"],
    ),
    "batch_size_zero": (
        None,
        ["--stages/train/loaders/batch_size=0:int"],
        ["stages/train/loaders/batch_size must be a whole number >= 1, got 0"],
    ),
    "freeze_encoder_not_bool": (
        None,
        ["--stages/warmup/freeze_encoder=yes:str"],
        ["stages/warmup/freeze_encoder must be true or false, got 'yes'"],
    ),
    "num_classes_vs_data": (
        None,
        ["--model/num_classes=3:int"],
        [
            "model/num_classes is 3",
            "binary masks with num_classes 1",
            "expected model/num_classes: 1",
        ],
    ),
    "override_without_type": (
        None,
        ["--stages/warmup/num_epochs=3"],
        ["'--stages/warmup/num_epochs=3' has no :type", "expected --path/to/key=value:type"],
    ),
    "model_in_channels_zero": (None, ["--model/in_channels=0:int"], ["in_channels", "got 0"]),
    "override_unknown_type": (
        None,
        ["--stages/warmup/num_epochs=3:integer"],
        ['unknown type :integer (did you mean "int"?)', "expected one of: str, int"],
    ),
    "override_carrying_code": (
        None,
        ["--stages/warmup/num_epochs=__import__('os').getpid():int"],
        ["is not a value of type int; expected a Python literal"],
    ),
    "config_is_a_list": (
        "- args\n- stages\n",
        [],
        ["holds a list; expected a mapping of top-level keys"],
    ),
    "missing_runner": (
        _drop("runner"),
        [],
        [
            "the config has no `runner: {_target_: ...}` block; expected e.g. runner: "
            "{_target_: podium.runners.PodiumRunner}"
        ],
    ),
    "missing_model": (
        _drop("model"),
        [],
        ["the config needs `model: {_target_: full.dotted.name, ...}` (got None)"],
    ),
    "missing_loaders": (
        _edit_all_stages(lambda s: s.pop("loaders")),
        [],
        ["has no `loaders:` block; expected e.g. loaders: {batch_size: 8"],
    ),
    "absent_criterion_key": (
        None,
        ["--stages/warmup/callbacks/loss_bce/criterion_key=bcee:str"],
        [
            'stages/warmup/callbacks/loss_bce/criterion_key "bcee" is not in '
            'stages/warmup/criterion (did you mean "bce"?); expected one of: bce, dice'
        ],
    ),
    "scheduler_callback_without_scheduler": (
        None,
        ["--stages/warmup/callbacks/scheduler/_target_=catalyst.callbacks.SchedulerCallback:str"],
        [
            "stages/warmup/callbacks/scheduler (SchedulerCallback) "
            "needs a `scheduler:` block in stage warmup"
        ],
    ),
    "optimizer_callback_without_optimizer": (
        _edit_all_stages(lambda s: s.pop("optimizer")),
        [],
        [
            "callbacks/optimizer (OptimizerCallback) needs an `optimizer:` block in stage",
            "expected e.g. optimizer: {_target_: torch.optim.AdamW",
        ],
    ),
    "callback_not_a_block": (
        None,
        ["--stages/warmup/callbacks/checkpoint=oops:str"],
        ["stages/warmup/callbacks/checkpoint must be a block like {_target_:"],
    ),
    "unknown_encoder": (
        None,
        ["--model/encoder=resnet19:str"],
        ['unknown encoder "resnet19" (did you mean "resnet18"?); expected a timm model name'],
    ),
    "unknown_model_name": (
        None,
        ["--model/name=unte:str"],
        ['unknown model "unte" (did you mean "unet"?)', "fpn", "centernet"],
    ),
    "old_architecture_key_with_create_model": (
        None,
        ["--model/architecture=fpn:str"],
        ['unknown key "architecture" in model', "unet accepts: encoder"],
    ),
    "in_channels_vs_images": (
        None,
        ["--model/in_channels=3:int"],
        [
            "model/in_channels is 3 but the data of stage warmup",
            "images of 1 channel(s)",
            "expected model/in_channels: 1",
        ],
    ),
    "secret_in_the_config": (
        None,
        [
            "--loggers/neptune/_target_=podium.loggers.NeptuneLogger:str",
            "--loggers/neptune/mode=offline:str",
            "--loggers/neptune/api_token=s3cr3t-t0ken:str",
        ],
        ["loggers/neptune/api_token: secrets do not belong in a config", "NEPTUNE_API_TOKEN"],
    ),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config(case, tmp_path, run_dir, tiny):
    """catalyst-dl run (in this process) on a broken config, pointed at an existing run."""
    edit, overrides, culprits = CONFIG_CASES[case]
    path = (
        config_file(tmp_path, text=edit) if isinstance(edit, str) else config_file(tmp_path, edit)
    )
    before = snapshot(run_dir, tiny)
    message = catalyst_error(
        "--config",
        path,
        f"--args/logdir={run_dir}:str",
        f"--data/root={tiny}:str",
        *SHORT,
        *overrides,
    )
    assert_message(message, *culprits)
    assert "s3cr3t-t0ken" not in message
    assert snapshot(run_dir, tiny) == before


def test_an_override_changes_one_stage_of_an_anchored_block(monkeypatch):
    """compat.config_loading: `loaders: *loaders` is one object in Catalyst's YAML loader, so an
    override of stages/train/loaders changed stages/warmup too; now only the key given changes."""
    from catalyst.dl.scripts import _misc
    from catalyst.dl.scripts.run import parse_args

    monkeypatch.setattr(
        sys,
        "argv",
        ["catalyst-dl", "--config", str(NUCLEI_CONFIG), "--stages/train/loaders/batch_size=16:int"],
    )
    args, unknown = parse_args()
    _, config = _misc.parse_args_uargs(args, unknown)
    assert config["stages"]["train"]["loaders"]["batch_size"] == 16
    assert config["stages"]["warmup"]["loaders"]["batch_size"] == 8
    monkeypatch.setattr(_misc, "load_config", _misc.load_config.__wrapped__)  # Catalyst's own
    _, config = _misc.parse_args_uargs(args, unknown)
    assert config["stages"]["warmup"]["loaders"]["batch_size"] == 16


def test_missing_data_root_key(tmp_path, run_dir):
    path = config_file(tmp_path, _drop("data", "root"))
    message = catalyst_error("--config", path, f"--args/logdir={run_dir}:str", *SHORT)
    assert_message(message, 'data (stage warmup) is missing the required key "root"')


def test_missing_config_file(tmp_path, run_dir):
    missing = tmp_path / "confg.yml"
    message = catalyst_error("--config", missing, f"--args/logdir={run_dir}:str")
    assert_message(message, f"config {missing} does not exist; expected a YAML file")


# ---------------------------------------------------------------------------- data
def _remove_mask(root):
    name = first_train_name(root)
    (root / "masks" / f"{name}.png").unlink()
    return [f"{name}.png has no mask; expected {root / 'masks' / name}.png"]


def _split_columns(root):
    (root / "split.csv").write_text("image,fold\na,1\n")
    return [f"split file {root / 'split.csv'} has columns ['image', 'fold']; expected name + split"]


def _split_names_missing_image(root):
    with open(root / "split.csv", "a") as file:
        file.write("ghost_tile,train\n")
    return [
        f"1 name(s) have no image file in {root / 'images'}: ghost_tile",
        "(expected NAME with extension",
    ]


def _empty_valid_split(root):
    names = [
        line.split(",")[0]
        for line in (root / "split.csv").read_text().splitlines()[1:]
        if line.endswith(",valid")
    ]
    (root / "exclude.txt").write_text("\n".join(names) + "\n")
    return ["the valid selection of", "is empty after the exclusion list exclude.txt"]


def _std_zero(root):
    return ["normalize.std must hold positive numbers, got [0.0]"]


def _missing_exclusion_list(root):
    return [
        "exclusion list",
        "nope.txt does not exist; expected a text file with one image name per line",
    ]


# id: (break the data folder -> culprits, overrides); all fail before anything is written
DATA_CASES = {
    "missing_data_root": (
        lambda root: shutil.rmtree(root) or [f"data folder {root} does not exist"],
        [],
    ),
    "image_without_mask": (_remove_mask, []),
    "split_file_wrong_columns": (_split_columns, []),
    "split_value_misspelled": (
        lambda root: ["split='vaild' is not in split file", 'did you mean "valid"'],
        ["--data/valid_split=vaild:str"],
    ),
    "split_names_a_missing_image": (_split_names_missing_image, []),
    "empty_split": (_empty_valid_split, ["--data/exclude=exclude.txt:str"]),
    "normalize_std_zero": (_std_zero, ["--data/normalize/std=[0.0]:list"]),
    "exclusion_list_missing": (_missing_exclusion_list, ["--data/exclude=nope.txt:str"]),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_data(case, tmp_path, tiny, run_dir):
    broken, overrides = DATA_CASES[case]
    root = data_variant(tiny, tmp_path / "data")
    culprits = broken(root)
    before = snapshot(run_dir, tiny)
    message = catalyst_error(
        "--config",
        NUCLEI_CONFIG,
        f"--args/logdir={run_dir}:str",
        f"--data/root={root}:str",
        *SHORT,
        *overrides,
    )
    assert_message(message, *culprits)
    assert snapshot(run_dir, tiny) == before


# id: (break the data folder -> culprits, overrides); found when the sample is read (training)
SAMPLE_CASES = {
    "mask_size_differs": (
        lambda root: (
            _replace_mask(root, np.zeros((64, 64), np.uint8))
            and ["is 64×64 but image", "is 128×128; expected the same size"]
        ),
        [],
    ),
    "mask_value_not_below_num_classes": (
        lambda root: ["has values 0..255 but num_classes is 2; expected class indices 0..1"],
        ["--data/target=multiclass:str", "--data/num_classes=2:int", "--model/num_classes=2:int"],
    ),
    "wrong_channel_count": (
        lambda root: ["has 1 channel(s) but in_channels is 3; expected 3 channel(s)"],
        ["--data/in_channels=3:int", "--model/in_channels=3:int"],
    ),
}


def _replace_mask(root, mask):
    import cv2

    path = root / "masks" / f"{first_train_name(root)}.png"
    path.unlink()
    cv2.imwrite(str(path), mask)
    return True


@pytest.mark.parametrize("case", sorted(SAMPLE_CASES))
def test_data_sample(case, tmp_path, tiny):
    broken, overrides = SAMPLE_CASES[case]
    root = data_variant(tiny, tmp_path / "data")
    culprits = broken(root)
    before = snapshot(tiny)
    message = catalyst_error(
        "--config",
        NUCLEI_CONFIG,
        f"--args/logdir={tmp_path / 'run'}:str",
        f"--data/root={root}:str",
        *SHORT,
        *overrides,
    )
    assert_message(message, *culprits)
    assert snapshot(tiny) == before


def test_cli_corrupt_image_in_a_loader_worker(tmp_path, tiny):
    """Read by a DataLoader worker process: still one line, not the worker's traceback."""
    root = data_variant(tiny, tmp_path / "data")
    victim = root / "images" / f"{first_train_name(root)}.png"
    content = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(content[:300])
    result = cli(
        "catalyst-dl",
        "run",
        "--config",
        NUCLEI_CONFIG,
        f"--args/logdir={tmp_path / 'run'}:str",
        f"--data/root={root}:str",
        *SHORT,
        "--stages/warmup/loaders/num_workers=2:int",
    )
    assert_cli_error(
        result,
        f"cannot decode image file {victim} (corrupt or truncated); "
        "expected a readable PNG, JPEG or TIFF",
    )


# ---------------------------------------------------------------------------- runtime
def test_nan_loss_keeps_the_previous_stage_checkpoint(tmp_path, tiny):
    """A learning rate of 1e30 in stage 2: NanGuard stops at the first non-finite loss, before
    any NaN weights are saved; stage 1's checkpoint stays the best one, whole and finite."""
    logdir = tmp_path / "run"
    message = catalyst_error(
        "--config",
        NUCLEI_CONFIG,
        f"--args/logdir={logdir}:str",
        f"--data/root={tiny}:str",
        *SHORT,
        "--stages/train/optimizer/lr=1.0e30:float",
        "--stages/train/callbacks/nan_guard/_target_=podium.callbacks.NanGuardCallback:str",
    )
    assert_message(message, "non-finite loss in stage train, epoch 1 of 1", "loss=")
    best = logdir / "checkpoints" / "best.pth"
    assert best.read_bytes() == (logdir / "checkpoints" / "warmup.1.pth").read_bytes()
    weights = torch.load(best, map_location="cpu", weights_only=True)["model_state_dict"]
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    assert not list((logdir / "checkpoints").glob("train.*"))


def test_loader_yields_no_batch(tmp_path, tiny):
    message = catalyst_error(
        "--config",
        NUCLEI_CONFIG,
        f"--args/logdir={tmp_path / 'run'}:str",
        f"--data/root={tiny}:str",
        *SHORT,
        "--stages/warmup/loaders/batch_size=64:int",
        "--stages/warmup/loaders/drop_last=True:bool",
    )
    assert_message(
        message,
        "loader train of stage warmup yields no batch: 8 samples, batch_size 64, "
        "drop_last True; expected at least one batch",
    )


def empty_datasets(root):
    """A dataset builder (`data: {_target_: test_bad_input.empty_datasets}`) that yields nothing."""
    from torch.utils.data import TensorDataset

    return {
        "train": TensorDataset(torch.empty(0, 1, 8, 8)),
        "valid": TensorDataset(torch.empty(0, 1, 8, 8)),
    }


def test_dataset_that_yields_nothing(tmp_path, tiny):
    path = config_file(tmp_path, _set({"_target_": "test_bad_input.empty_datasets"}, "data"))
    message = catalyst_error(
        "--config", path, f"--args/logdir={tmp_path / 'run'}:str", f"--data/root={tiny}:str", *SHORT
    )
    assert_message(
        message,
        "loader train of stage warmup yields nothing: its TensorDataset has 0 samples; "
        "expected at least one",
    )
    assert not (tmp_path / "run").exists()  # found before anything was written


def test_logdir_is_a_file(tmp_path, tiny):
    blocker = tmp_path / "run"
    blocker.write_text("not a folder\n")
    message = catalyst_error(
        "--config", NUCLEI_CONFIG, f"--args/logdir={blocker}:str", f"--data/root={tiny}:str", *SHORT
    )
    assert_message(message, f"args/logdir {blocker} is a file; expected a folder")
    assert blocker.read_text() == "not a folder\n"


def test_metric_key_the_loader_does_not_log(tmp_path, tiny):
    """Found when the valid loader ends (Catalyst: a KeyError at the epoch's end)."""
    message = catalyst_error(
        "--config",
        NUCLEI_CONFIG,
        f"--args/logdir={tmp_path / 'run'}:str",
        f"--data/root={tiny}:str",
        *SHORT,
        "--stages/warmup/callbacks/checkpoint/metric_key=dcie:str",
    )
    assert_message(
        message,
        'stages/warmup/callbacks/checkpoint/metric_key "dcie" is not a metric of '
        'loader valid (did you mean "dice"?); expected one of: dice',
    )


@pytest.mark.parametrize(
    "override, culprit",
    [
        (
            "--stages/warmup/callbacks/optimizer/metric_key=losss:str",
            'stages/warmup/callbacks/optimizer/metric_key names "losss", '
            'which no callback logged for loader train (did you mean "loss"?)',
        ),
        (
            "--stages/warmup/callbacks/loss/metrics={'loss_bce': 1.0, 'loss_dcie': 1.0}:dict",
            'stages/warmup/callbacks/loss/metrics names "loss_dcie", '
            'which no callback logged for loader train (did you mean "loss_dice"?)',
        ),
    ],
    ids=["optimizer", "aggregation"],
)
def test_callback_reads_a_batch_metric_nobody_logs(override, culprit, tmp_path, tiny):
    """Catalyst: a bare KeyError from inside OptimizerCallback / MetricAggregationCallback."""
    message = catalyst_error(
        "--config",
        NUCLEI_CONFIG,
        f"--args/logdir={tmp_path / 'run'}:str",
        f"--data/root={tiny}:str",
        *SHORT,
        override,
    )
    assert_message(message, culprit, "expected one of: ", "loss_bce")


@pytest.mark.skipif(
    not os.path.exists("/dev/full"), reason="needs Linux's /dev/full (every write: ENOSPC)"
)
def test_cli_log_write_fails_mid_run(tmp_path, tiny):
    """A CSV log that hits a full disk at the first epoch's flush (logs/train.csv is /dev/full):
    one line naming the logger and the file; no traceback, and no second failure at exit."""
    logdir = tmp_path / "run"
    (logdir / "logs").mkdir(parents=True)
    (logdir / "logs" / "train.csv").symlink_to("/dev/full")
    result = cli(
        "catalyst-dl",
        "run",
        "--config",
        NUCLEI_CONFIG,
        f"--args/logdir={logdir}:str",
        f"--data/root={tiny}:str",
        *SHORT,
    )
    assert_cli_error(
        result,
        f"loggers/csv (CSVLogger) cannot write {logdir / 'logs' / 'train.csv'}: "
        "No space left on device",
        "expected a writable run directory",
    )
    assert "Exception ignored" not in result.stderr, result.stderr[-3000:]
    assert (logdir / "checkpoints" / "warmup.1.pth").is_file()  # written before the logs: kept
    assert (logdir / "logs" / "train.csv").is_symlink()


def test_cli_checkpoint_write_fails_and_the_old_file_stays(tmp_path, tiny):
    """A disk that fills up (here: a file-size limit) while a checkpoint is written: one line,
    and the checkpoint already at that path is byte-identical (atomic writes)."""
    logdir = tmp_path / "run"
    (logdir / "checkpoints").mkdir(parents=True)
    existing = logdir / "checkpoints" / "warmup.1_full.pth"
    torch.save({"model_state_dict": {"w": torch.arange(4.0)}}, existing)
    content = existing.read_bytes()
    result = cli(
        "catalyst-dl",
        "run",
        "--config",
        NUCLEI_CONFIG,
        f"--args/logdir={logdir}:str",
        f"--data/root={tiny}:str",
        *SHORT,
        limit_file_size=8 << 20,
    )
    assert_cli_error(
        result, f"cannot write checkpoint {existing}", "expected a writable folder with free space"
    )
    assert existing.read_bytes() == content
    assert not [p.name for p in (logdir / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_cli_predict_write_fails_and_the_earlier_prediction_stays(run_dir, tiny, predictions):
    """A disk that fills up half-way through `podium predict` into the folder of an earlier
    prediction (here: a file-size limit the first overlay exceeds): one line naming the file, and
    every file of the earlier prediction has its bytes (cv2.imwrite deleted the old overlay)."""

    def contents():
        return {
            str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(predictions.rglob("*"))
            if p.is_file()
        }

    before = contents()
    result = cli(
        "podium",
        "predict",
        "--no-progress",
        "--run",
        run_dir,
        "--data",
        tiny,
        "--split",
        "valid",
        "--out",
        predictions,
        limit_file_size=8 << 10,
    )
    assert_cli_error(
        result,
        f"cannot write {predictions / 'overlays'}",
        "File too large",
        "expected a writable output folder with free space",
    )
    assert contents() == before
    assert not [p for p in predictions.rglob("*.tmp")]


def _write_centernet(out, run_dir):
    from podium.tasks.centernet.predict import write_csv

    return write_csv(
        [{"image": "a.png", "x1": 1, "y1": 2, "x2": 3, "y2": 4, "score": 0.9}], out / "boxes.csv"
    )


def _write_detector(out, run_dir):
    from podium.tasks.boxes.predict import write_csv

    return write_csv([{"image": "a.png", "score": 0.9, "label": 1}], out / "preds.csv")


def _write_geopose(out, run_dir):
    from podium.tasks.geopose.predict import write_table

    return write_table([{"name": "a", "angle": 1.0, "scale": 2.0}], None, out)


def _write_progress_plot(out, run_dir):
    from podium.callbacks.progress import plot_progress

    return plot_progress(
        [{"epoch": 1, "stage": "train", "metrics": {"train": {"loss": 1.0}}}], out / "progress.png"
    )


def _write_report(out, run_dir):
    from podium.report.build import write_report

    return write_report(run_dir, out / "report.html")


@pytest.mark.skipif(
    not os.path.exists("/dev/full"), reason="needs Linux's /dev/full (every write: ENOSPC)"
)
@pytest.mark.parametrize(
    "write, name",
    [
        (_write_centernet, "boxes.csv"),
        (_write_detector, "preds.csv"),
        (_write_geopose, "predictions.csv"),
        (_write_progress_plot, "progress.png"),
        (_write_report, "report.html"),
    ],
    ids=["predict-centernet", "predict-detector", "predict-geopose", "progress-plot", "report"],
)
def test_output_write_fails_and_the_old_file_stays(tmp_path, write, name, run_dir):
    """An output of predict-centernet / -detector / -geopose, the training progress plot and
    `podium report` on a full disk (the temp file is /dev/full): one line naming the file; the
    earlier file keeps its bytes; no temp left."""
    from podium.files import temporary_path

    (tmp_path / name).write_text("earlier prediction\n")
    temporary_path(tmp_path / name).symlink_to("/dev/full")
    with pytest.raises(PodiumError) as caught:
        write(tmp_path, run_dir)
    assert_message(
        str(caught.value),
        f"cannot write {tmp_path / name}: No space left on device",
        "expected a writable output folder with free space",
    )
    assert (tmp_path / name).read_text() == "earlier prediction\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


# ---------------------------------------------------------------------------- checkpoints
def test_predict_truncated_checkpoint(tmp_path, capsys, run_dir, tiny, predictions):
    broken = tmp_path / "broken.pth"
    broken.write_bytes((run_dir / "checkpoints" / "best.pth").read_bytes()[:100_000])
    before = snapshot(predictions, run_dir)
    message = podium_error(
        capsys,
        "predict",
        "--run",
        run_dir,
        "--checkpoint",
        broken,
        "--data",
        tiny,
        "--out",
        predictions,
    )
    assert_message(
        message,
        f"checkpoint {broken} cannot be read (truncated or not a torch file)",
        "expected a complete .pth file",
    )
    assert snapshot(predictions, run_dir) == before


def test_predict_refuses_a_checkpoint_carrying_code(tmp_path, capsys, run_dir, tiny, predictions):
    marker = tmp_path / "payload-ran"
    evil = evil_checkpoint(tmp_path / "evil.pth", marker)
    before = snapshot(predictions, run_dir)
    line = podium_error(
        capsys,
        "predict",
        "--run",
        run_dir,
        "--checkpoint",
        evil,
        "--data",
        tiny,
        "--out",
        predictions,
    )
    named = f"(it names {open.__module__}.open)"  # io.open; _io.open from Python 3.12 on
    assert_message(line, f"checkpoint {evil} was refused", named, "weights_only=True")
    assert (
        "\x1b" not in line
    )  # torch's message (ANSI codes, "re-run with weights_only=False") is not shown
    assert not marker.exists()
    assert snapshot(predictions, run_dir) == before


def test_resume_refuses_a_checkpoint_carrying_code(tmp_path, tiny):
    marker = tmp_path / "payload-ran"
    evil = evil_checkpoint(tmp_path / "evil.pth", marker)
    message = catalyst_error(
        "--config",
        NUCLEI_CONFIG,
        f"--args/logdir={tmp_path / 'run'}:str",
        f"--data/root={tiny}:str",
        *SHORT,
        "--resume",
        evil,
    )
    assert_message(message, str(evil), "weights_only")
    assert not marker.exists()


def _other_architecture(tmp_path):
    from podium.models import build_segmentation_model

    path = tmp_path / "fpn.pth"
    model = build_segmentation_model("fpn", "resnet18", in_channels=1, num_classes=1)
    torch.save({"model_state_dict": model.state_dict()}, path)
    return path, [
        f"checkpoint {path} does not fit the model",
        "missing keys (e.g. [",
        "unexpected keys",
    ]


def _other_num_classes(tmp_path):
    from podium.models import build_segmentation_model

    path = tmp_path / "three_classes.pth"
    model = build_segmentation_model("unet", "resnet18", in_channels=1, num_classes=3)
    torch.save(model.state_dict(), path)
    return path, [f"checkpoint {path} does not fit the model", "size mismatch"]


def _not_a_torch_file(tmp_path):
    path = tmp_path / "image.pth"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    return path, [
        f"checkpoint {path} is not a torch file (it starts with b'\\x89PNG')",
        "expected a .pth",
    ]


def _no_weights(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    return path, [f"checkpoint {path} holds no model weights; expected a state dict of tensors"]


def _missing_checkpoint(tmp_path):
    path = tmp_path / "bset.pth"
    return path, [f"checkpoint {path} does not exist; expected best, last"]


CHECKPOINT_CASES = {
    "other_architecture": _other_architecture,
    "other_num_classes": _other_num_classes,
    "not_a_torch_file": _not_a_torch_file,
    "holds_no_weights": _no_weights,
    "missing_file": _missing_checkpoint,
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_checkpoint(case, tmp_path, capsys, run_dir, tiny, predictions):
    path, culprits = CHECKPOINT_CASES[case](tmp_path)
    before = snapshot(predictions, run_dir)
    message = podium_error(
        capsys,
        "predict",
        "--run",
        run_dir,
        "--checkpoint",
        path,
        "--data",
        tiny,
        "--out",
        predictions,
    )
    assert_message(message, *culprits)
    assert snapshot(predictions, run_dir) == before


# ------------------------------------------------------------------------- predict & other commands
def test_predict_out_is_a_file(tmp_path, capsys, run_dir, tiny):
    out = tmp_path / "predictions.csv"
    out.write_text("ImageId,EncodedPixels\n")
    message = podium_error(capsys, "predict", "--run", run_dir, "--data", tiny, "--out", out)
    assert_message(message, f"out {out} is a file; expected a folder")
    assert out.read_text() == "ImageId,EncodedPixels\n"


def _inference_yaml(tmp_path, text):
    path = tmp_path / "infer.yml"
    path.write_text(text)
    return path


# id: (argv after `podium`, given tmp_path / run_dir / tiny / predictions -> (argv, culprits))
COMMAND_CASES = {
    "predict_run_is_not_a_run_directory": lambda t, run, data, out: (
        ["predict", "--run", data, "--data", data, "--out", out],
        [
            f"{data} is not a podium run directory: {data / 'configs' / '_config.json'} is missing "
            "(expected the folder `catalyst-dl run` wrote"
        ],
    ),
    "predict_missing_data_folder": lambda t, run, data, out: (
        ["predict", "--run", run, "--data", t / "nope", "--out", out],
        [f"data folder {t / 'nope'} does not exist (expected images/ and masks/ inside)"],
    ),
    "predict_split_misspelled": lambda t, run, data, out: (
        ["predict", "--run", run, "--data", data, "--split", "vaild", "--out", out],
        ["split='vaild' is not in split file", 'did you mean "valid"'],
    ),
    "predict_unknown_tta": lambda t, run, data, out: (
        ["predict", "--run", run, "--data", data, "--tta", "d5", "--out", out],
        ['unknown tta views "d5"; expected one of: none, flip, d2, d4, multiscale'],
    ),
    "predict_threshold_out_of_range": lambda t, run, data, out: (
        ["predict", "--run", run, "--data", data, "--threshold", "2", "--out", out],
        ["threshold must be a probability in [0, 1]", "got 2.0"],
    ),
    "inference_yaml_syntax_error": lambda t, run, data, out: (
        ["predict", "--config", _inference_yaml(t, f"models:\n  - {{run: {run}\nout: {out}\n")],
        [f"inference config {t / 'infer.yml'} is not valid YAML at line 3, column 4"],
    ),
    "inference_config_misspelled_key": lambda t, run, data, out: (
        [
            "predict",
            "--config",
            _inference_yaml(
                t, f"models: [{{run: {run}}}]\nout: {out}\nensemble: {{methd: mean}}\n"
            ),
        ],
        ['unknown key "methd" in ensemble (did you mean "method"?); expected one of: method'],
    ),
    "stats_missing_folder": lambda t, run, data, out: (
        ["stats", t / "nope", "--out", t / "stats.json"],
        [f"image folder {t / 'nope'} does not exist; expected a data folder with images/"],
    ),
    "folds_too_many": lambda t, run, data, out: (
        ["folds", data, "--k", "50", "--out", t / "folds.csv"],
        ["cannot make 50 folds of", "expected at least k images"],
    ),
}


@pytest.mark.parametrize("case", sorted(COMMAND_CASES))
def test_command(case, tmp_path, capsys, run_dir, tiny, predictions):
    argv, culprits = COMMAND_CASES[case](tmp_path, run_dir, tiny, predictions)
    before = snapshot(predictions, run_dir, tiny)
    message = podium_error(capsys, *argv)
    assert_message(message, *culprits)
    assert snapshot(predictions, run_dir, tiny) == before
