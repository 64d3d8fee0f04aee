"""podium.checkpoints: reading .pth files, unwrapping models, summarising mismatches."""

import pytest
import torch
from torch import nn

from podium import checkpoints
from podium.errors import PodiumError


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def test_read_checkpoint_and_model_weights(tmp_path):
    model = _linear()
    full, bare = tmp_path / "full.pth", tmp_path / "bare.pth"
    torch.save({"model_state_dict": model.state_dict(), "stage_key": "train"}, full)
    torch.save(model.state_dict(), bare)
    assert checkpoints.read_checkpoint(full)["stage_key"] == "train"
    wrapped = checkpoints.read_checkpoint(bare, bare_ok=True)
    assert list(wrapped) == ["model_state_dict"]
    assert torch.equal(wrapped["model_state_dict"]["weight"], model.weight.detach())
    for path in (full, bare):
        weights = checkpoints.model_weights(path)
        assert sorted(weights) == ["bias", "weight"]
    with pytest.raises(
        PodiumError,
        match=r"^--resume checkpoint .*bare.pth is not "
        r"a Catalyst checkpoint \(no model_state_dict\)$",
    ):
        checkpoints.read_checkpoint(bare, "--resume checkpoint")


def test_missing_truncated_foreign_and_code_files(tmp_path):
    with pytest.raises(PodiumError, match=r"^init_from .*nope.pth does not exist$"):
        checkpoints.read(tmp_path / "nope.pth", "init_from")
    good = tmp_path / "good.pth"
    torch.save({"a": torch.zeros(2)}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises(
        PodiumError,
        match=r"truncated.pth cannot be read \(truncated or not a torch file\): .*; "
        r"expected a complete .pth file$",
    ):
        checkpoints.read(truncated)
    png = tmp_path / "image.pth"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(
        PodiumError,
        match=r"^checkpoint .*image.pth is not a torch file \(it starts with b'\\x89PNG'\)",
    ):
        checkpoints.read(png)
    code = tmp_path / "code.pth"
    torch.save({"model": nn.Linear(1, 1)}, code)
    with pytest.raises(
        PodiumError, match=r"code.pth was refused: .*\(it names torch.nn.modules.linear.Linear\)"
    ):
        checkpoints.read(code)
    with pytest.raises(PodiumError, match=r"holds no model weights"):
        checkpoints.model_weights(_plain(tmp_path))


def _plain(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save({"epoch": 3}, path)
    return path


def test_unwrap():
    model = _linear()
    assert checkpoints.unwrap(model) is model
    assert checkpoints.unwrap(nn.DataParallel(nn.DataParallel(model))) is model


def test_mismatch_summary():
    own = {"a": (2, 3), "b": (2,), "c": (1,), "d": (4,)}
    saved = {"a": (2, 3), "b": (5,), "e": (1,), "f": (1,)}
    assert checkpoints.mismatch(own, own) == ""
    assert checkpoints.mismatch(own, saved) == (
        "2 missing keys (e.g. c, d), 2 unexpected keys (e.g. e, f), "
        "1 shape mismatches (e.g. b: checkpoint (5,) vs model (2,))"
    )
    assert checkpoints.shapes({"w": torch.zeros(2, 3), "n": 7}) == {"w": (2, 3), "n": ()}


def test_load_model_weights_strict_and_loose():
    source, target = nn.Linear(3, 2), nn.Linear(3, 4)
    weights = source.state_dict()
    with pytest.raises(
        PodiumError, match=r"^checkpoint x.pth does not fit the model Linear: 2 shape mismatches"
    ):
        checkpoints.load_model_weights(nn.DataParallel(target), weights, "x.pth")
    same = nn.Linear(3, 2)
    assert checkpoints.load_model_weights(nn.DataParallel(same), weights, "x.pth") == ""
    assert torch.equal(same.weight, source.weight)
    mixed = nn.Sequential(nn.Linear(3, 2))
    extra = {"0.weight": source.weight.detach().clone(), "0.bias": torch.ones(9)}
    skipped = checkpoints.load_model_weights(mixed, extra, "x.pth", strict=False)
    assert skipped == "1 shape mismatches (e.g. 0.bias: checkpoint (9,) vs model (2,))"
    assert torch.equal(mixed[0].weight, source.weight)
    with pytest.raises(PodiumError, match="needs one model, not a dict of models"):
        checkpoints.load_model_weights({"a": same}, weights, "x.pth")
