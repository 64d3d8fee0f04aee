"""Bad input: one clear error naming the culprit, exit != 0, nothing written.

Two cases run the real commands in a subprocess (the one-line `podium: error:` output and the
exit status of `catalyst-dl run` and `podium predict`); the rest run the same entry points
in-process, which checks the same messages without paying the start-up cost each time.
"""
import shutil

import pytest
import torch

from conftest import catalyst_run, catalyst_run_in_process, run_command
from podium.cli.main import main as podium_main

SHORT = ("--stages/warmup/num_epochs=1:int", "--stages/train/num_epochs=0:int")


def assert_one_clear_error(result, *culprits):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("podium: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    for culprit in culprits:
        assert culprit in errors[0], errors[0]


def test_catalyst_dl_prints_one_line_and_fails(tmp_path, nuclei_data):
    result = catalyst_run(tmp_path / "run", nuclei_data, *SHORT, "--model/encoder=resnet19:str")
    assert_one_clear_error(result, '"resnet19"', 'did you mean "resnet18"')
    assert not (tmp_path / "run").exists()  # failed before Catalyst wrote into the logdir


@pytest.mark.parametrize(
    "override, culprits",
    [
        ("--model/architecture=unte:str", ['"unte"', 'did you mean "unet"']),
        ("--model/encodr=resnet18:str", ['"encodr"', "model", 'did you mean "encoder"']),
        ("--model/in_channels=0:int", ["in_channels", "0"]),
        ("--model/_target_=podium.models.no_such_builder:str", ["no_such_builder"]),
        ("--data/roots=data:str", ['"roots"', "data", 'did you mean "root"']),
        ("--stages/warmup/freeze_encodr=True:bool",
         ['"freeze_encodr"', "stages/warmup", 'did you mean "freeze_encoder"']),
        ("--modle/encoder=resnet18:str", ['"modle"', 'did you mean "model"']),
    ],
)
def test_config_mistakes(tmp_path, nuclei_data, override, culprits):
    message = catalyst_run_in_process(tmp_path / "run", nuclei_data, *SHORT, override)
    for culprit in culprits:
        assert culprit in message, message
    assert not (tmp_path / "run").exists()


def test_missing_data_folder(tmp_path):
    missing = tmp_path / "no_such_folder"
    message = catalyst_run_in_process(tmp_path / "run", missing, *SHORT)
    assert str(missing) in message and "does not exist" in message


def test_image_without_mask(tmp_path, nuclei_data):
    data = tmp_path / "nuclei"
    shutil.copytree(nuclei_data, data)
    victim = sorted((data / "masks").glob("train_*.png"))[0]
    victim.unlink()
    message = catalyst_run_in_process(tmp_path / "run", data, *SHORT)
    assert victim.stem in message and "mask" in message


def test_podium_predict_prints_one_line_and_fails(tmp_path, nuclei_data):
    result = run_command("podium", "predict", "--run", tmp_path, "--data", nuclei_data,
                         "--out", tmp_path / "out")
    assert_one_clear_error(result, str(tmp_path), "_config.json")


def predict_error(capsys, run_dir, checkpoint, data, out):
    code = podium_main(["predict", "--run", str(run_dir), "--checkpoint", str(checkpoint),
                        "--data", str(data), "--out", str(out)])
    assert code != 0
    assert not out.exists()
    return capsys.readouterr().err


def test_predict_truncated_checkpoint(trained_run, nuclei_data, tmp_path, capsys):
    run_dir, _ = trained_run
    broken = tmp_path / "broken.pth"
    broken.write_bytes((run_dir / "checkpoints" / "best.pth").read_bytes()[:100_000])
    err = predict_error(capsys, run_dir, broken, nuclei_data, tmp_path / "out")
    assert str(broken) in err and "cannot be read" in err


class CodeCarrier:
    def __reduce__(self):
        return (print, ("this checkpoint ran code",))


def test_predict_refuses_a_checkpoint_that_carries_code(trained_run, nuclei_data, tmp_path,
                                                        capsys):
    run_dir, _ = trained_run
    evil = tmp_path / "evil.pth"
    torch.save({"model_state_dict": CodeCarrier()}, evil)
    err = predict_error(capsys, run_dir, evil, nuclei_data, tmp_path / "out")
    assert str(evil) in err and "weights_only" in err
    assert "this checkpoint ran code" not in capsys.readouterr().out


def test_predict_checkpoint_of_another_architecture(trained_run, nuclei_data, tmp_path, capsys):
    from podium.models import build_segmentation_model

    run_dir, _ = trained_run
    other = tmp_path / "fpn.pth"
    model = build_segmentation_model("fpn", "resnet18", in_channels=1, num_classes=1)
    torch.save({"model_state_dict": model.state_dict()}, other)
    err = predict_error(capsys, run_dir, other, nuclei_data, tmp_path / "out")
    assert str(other) in err and "does not fit" in err and "missing keys" in err
