"""`catalyst-dl tune` (optuna) on podium configs: the shipped search runs, and each compat fix
(podium.compat.tune_flags, podium.compat.tune_main) against Catalyst's unpatched original."""

import json
import sys

import optuna
import pandas as pd
import pytest
import yaml

import podium  # noqa: F401  (compat first)
from catalyst.dl.__main__ import build_parser
from catalyst.dl.scripts import tune

from conftest import REPO, run_command
from podium.compat import tune_flags, tune_main
from podium.errors import PodiumError

TUNE_CONFIG = REPO / "configs" / "nuclei" / "tune.yml"


def small_split(nuclei_data, path, train=8, valid=1):
    split = pd.read_csv(nuclei_data / "split.csv")
    pd.concat(
        [split[split["split"] == "train"].head(train), split[split["split"] == "valid"].head(valid)]
    ).to_csv(path, index=False)
    return path


def test_two_trials_write_their_study_and_a_logdir_each(nuclei_data, tmp_path):
    """No --expdir, --storage as a URL, --direction also in study:, dotted sampler/pruner names."""
    storage = f"sqlite:///{tmp_path / 'db' / 'study.db'}"  # its folder does not exist yet
    logdir = tmp_path / "tune"
    result = run_command(
        "catalyst-dl",
        "tune",
        "--config",
        TUNE_CONFIG,
        "--n-trials",
        2,
        "--direction",
        "maximize",
        "--storage",
        storage,
        f"--args/logdir={logdir}:str",
        f"--data/root={nuclei_data}:str",
        f"--data/split_file={small_split(nuclei_data, tmp_path / 'split.csv')}:str",
        "--stages/tune/num_epochs=1:int",
        "--args/seed=7:int",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="nuclei_unet", storage=storage)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    for trial in trials:
        assert set(trial.params) == {"lr", "weight_decay", "dice_weight"}
        assert 0.0 <= trial.value <= 1.0
        run = logdir / f"trial_{trial.number}"  # one run directory per trial
        config = json.loads((run / "configs" / "_config.json").read_text())
        assert config["args"]["seed"] == 7  # the config's seed (no --seed given)
        stage = config["stages"]["tune"]
        assert stage["optimizer"]["lr"] == trial.params["lr"]
        assert stage["optimizer"]["weight_decay"] == trial.params["weight_decay"]
        assert stage["callbacks"]["loss"]["terms"]["dice"]["weight"] == trial.params["dice_weight"]
        assert (run / "checkpoints" / "best.pth").is_file()
        valid = pd.read_csv(run / "logs" / "valid.csv")
        assert len(valid) == 1 and valid["dice"].iloc[0] == pytest.approx(
            trial.value
        )  # the reported score
    assert trials[0].params != trials[1].params


def parse(*argv):
    args, unknown = build_parser().parse_known_args(["tune", *map(str, argv)])
    return args, unknown


def test_seed_and_storage_flags(monkeypatch):
    args, unknown = parse("--config", "x.yml", "--seed", 7, "--storage", "sqlite:///a.db")
    assert (args.seed, args.storage, unknown) == (7, "sqlite:///a.db", [])
    assert parse("--config", "x.yml")[0].seed is None  # the config's args/seed then (else 42)
    # Catalyst's own parser: no --seed (left to the config parser, which cannot read it), --storage
    # an int
    monkeypatch.setattr(tune, "build_args", tune.build_args.__wrapped__)
    args, unknown = parse("--config", "x.yml", "--seed", 7)
    assert not hasattr(args, "seed") and unknown == ["--seed", "7"]
    with pytest.raises(SystemExit):
        parse("--config", "x.yml", "--storage", "sqlite:///a.db")


def write_config(tmp_path, edit):
    config = yaml.safe_load(TUNE_CONFIG.read_text())
    config["study"]["storage"] = None
    edit(config)
    path = tmp_path / "tune.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_main(main, config, *argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["catalyst-dl", "tune"])
    args, unknown = parse("--config", config, *argv)
    args.n_trials = args.n_trials or 1
    return main(args, unknown)


def test_upstream_main_fails_on_podium_configs(tmp_path, monkeypatch):
    """What tune_main fixes, each failing before any training with Catalyst's own main."""
    upstream = tune_main.UPSTREAM["main"]
    with pytest.raises(KeyError, match="optuna.samplers.TPESampler"):  # dotted sampler name
        run_main(upstream, write_config(tmp_path, lambda c: None), monkeypatch=monkeypatch)
    config = write_config(tmp_path, lambda c: [c["study"].pop("sampler"), c["study"].pop("pruner")])
    with pytest.raises(TypeError, match="multiple values for keyword argument 'direction'"):
        run_main(upstream, config, "--direction", "maximize", monkeypatch=monkeypatch)
    # Path(args.expdir) without --expdir (Python 3.12+ quotes the type: 'NoneType')
    with pytest.raises(TypeError, match="not '?NoneType"):
        run_main(upstream, config, monkeypatch=monkeypatch)


def test_a_config_without_the_pruning_callback_fails_before_training(tmp_path, monkeypatch):
    config = write_config(tmp_path, lambda c: c["stages"]["tune"]["callbacks"].pop("optuna"))
    with pytest.raises(PodiumError, match="no stage has one; add .*OptunaPruningCallback"):
        run_main(
            tune_main.main,
            config,
            f"--args/logdir={tmp_path / 'never'}:str",
            monkeypatch=monkeypatch,
        )
    assert not (tmp_path / "never").exists()
    config = write_config(
        tmp_path, lambda c: c["study"].update(sampler={"_target_": "torch.nn.ReLU"})
    )
    with pytest.raises(
        PodiumError, match="study/sampler/_target_ must name a class of optuna.samplers"
    ):
        run_main(tune_main.main, config, monkeypatch=monkeypatch)


def test_each_trial_gets_its_values_its_logdir_and_a_seed(tmp_path, monkeypatch):
    """The objective up to the runner (recorded instead of built), for a config without
    args/seed."""
    built = []

    def record(expdir, config):
        built.append((expdir, config))
        raise optuna.TrialPruned()  # ends the trial before any training

    config = write_config(tmp_path, lambda c: c["args"].pop("seed"))
    monkeypatch.setattr(tune, "get_config_runner", record)
    study = run_main(
        tune_main.main,
        config,
        "--n-trials",
        2,
        f"--args/logdir={tmp_path / 'tune'}:str",
        monkeypatch=monkeypatch,
    )
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    for number, (expdir, trial_config) in enumerate(built):
        assert expdir is None and trial_config["args"]["seed"] == tune_flags.SEED_DEFAULT
        assert trial_config["args"]["logdir"] == str(tmp_path / "tune" / f"trial_{number}")
        assert (
            trial_config["stages"]["tune"]["optimizer"]["lr"] == study.trials[number].params["lr"]
        )
        assert "study" not in trial_config


def test_suggestions_are_replaced_in_mappings_and_lists():
    trial = optuna.trial.FixedTrial({"lr": 0.01, "p": 0.25, "size": 64})
    config = {
        "optimizer": {"lr": "trial.suggest_float('lr', 1e-4, 1e-1, log=True)", "momentum": 0.9},
        "train_transforms": [
            {"HorizontalFlip": {"p": "trial.suggest_float('p', 0.0, 0.5)"}},
            {"RandomCrop": {"height": "trial.suggest_int('size', 32, 96, step=32)", "width": 64}},
        ],
        "name": "unchanged",
    }
    assert tune_main.suggest(trial, config) == {
        "optimizer": {"lr": 0.01, "momentum": 0.9},
        "train_transforms": [
            {"HorizontalFlip": {"p": 0.25}},
            {"RandomCrop": {"height": 64, "width": 64}},
        ],
        "name": "unchanged",
    }
    with pytest.raises(
        PodiumError, match=r"stages/s/optimizer/lr: cannot evaluate .*trial.sugest_float"
    ):
        tune_main.suggest(
            trial, {"stages": {"s": {"optimizer": {"lr": "trial.sugest_float('lr', 0, 1)"}}}}
        )
    # Catalyst's own evaluation leaves suggestions inside lists as strings
    _, upstream = tune._process_trial_config(trial, config)
    assert (
        upstream["train_transforms"][0]["HorizontalFlip"]["p"]
        == "trial.suggest_float('p', 0.0, 0.5)"
    )


def test_trial_logdir():
    assert tune_main.trial_logdir({"args": {"logdir": "logs/x"}}, 3) == "logs/x/trial_3"
    assert tune_main.trial_logdir({"args": {}}, 3) is None


def _two_stage_trial(on_epoch_end, scores_per_stage):
    """One optuna trial fed by a fresh OptunaPruningCallback per stage (as Catalyst builds them)."""
    from types import SimpleNamespace

    from catalyst.callbacks import OptunaPruningCallback

    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    runner = SimpleNamespace(trial=trial, global_epoch_step=0)
    for stage, scores in scores_per_stage.items():
        callback = OptunaPruningCallback(loader_key="valid", metric_key="dice", minimize=False)
        runner.stage_key = stage
        callback.on_stage_start(runner)
        for epoch, score in enumerate(scores, 1):
            runner.stage_epoch_step, runner.global_epoch_step = epoch, runner.global_epoch_step + 1
            runner.epoch_metrics = {"valid": {"dice": score}}
            on_epoch_end(callback, runner)
    study.tell(trial, trial.best_score)
    return study.trials[0]


def test_pruning_callback_reports_every_stage_by_global_epoch():
    """Frozen-encoder stage then unfrozen: every epoch is reported at its global epoch, and the
    trial's score is its best epoch in any stage (Catalyst: stage 2's epoch 1 ignored, and the
    best of stage 2 only)."""
    from catalyst.callbacks import OptunaPruningCallback

    from podium.compat import optuna_pruning

    scores = {"warmup": [0.5], "train": [0.4, 0.45]}
    trial = _two_stage_trial(OptunaPruningCallback.on_epoch_end, scores)
    assert trial.intermediate_values == {1: 0.5, 2: 0.4, 3: 0.45}
    assert trial.value == 0.5

    with pytest.warns(UserWarning, match="already reported"):
        upstream = _two_stage_trial(optuna_pruning.original_on_epoch_end, scores)
    assert upstream.intermediate_values == {1: 0.5, 2: 0.45}  # stage 2's epoch 1 was dropped
    assert upstream.value == 0.45


def test_a_two_stage_config_is_tuned_by_global_epoch(nuclei_data, tmp_path, monkeypatch):
    """catalyst-dl tune's main on the shipped config with a frozen-encoder stage before `tune`."""

    def two_stages(config):
        config["data"].update(
            root=str(nuclei_data), split_file=str(small_split(nuclei_data, tmp_path / "split.csv"))
        )
        tune_stage = dict(config["stages"]["tune"], num_epochs=1)
        config["stages"] = {"frozen": dict(tune_stage, freeze_encoder=True), "tune": tune_stage}

    config = write_config(tmp_path, two_stages)
    study = run_main(
        tune_main.main, config, f"--args/logdir={tmp_path / 'tune'}:str", monkeypatch=monkeypatch
    )
    trial = study.trials[0]
    valid = pd.read_csv(tmp_path / "tune" / "trial_0" / "logs" / "valid.csv")
    dice = valid.loc[valid["step"] != "step", "dice"].astype(float).tolist()  # a header per stage
    assert len(dice) == 2
    assert trial.intermediate_values == pytest.approx({1: dice[0], 2: dice[1]})
    assert trial.value == pytest.approx(max(dice))
