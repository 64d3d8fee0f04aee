"""TensorBoard event files of a real run, read back with TensorBoard's own reader.

(`tests/tb_events.py` parses the TFRecord framing by hand; this reads them the way the
TensorBoard UI does, through `EventAccumulator`.) It reuses the session's `trained_run`
(1 warm-up + 3 epochs of the nuclei config), so it adds no training of its own.
"""

import pandas as pd
import pytest


def read_scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    tags = events.Tags()["scalars"]
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in tags}


@pytest.mark.parametrize("loader", ["train", "valid"])
def test_epoch_scalars_read_back_with_tensorboard_equal_the_csv(trained_run, loader):
    logdir, _ = trained_run
    scalars = read_scalars(logdir / "tensorboard" / loader)
    frame = pd.read_csv(logdir / "logs" / f"{loader}.csv")
    steps = list(range(1, len(frame) + 1))  # global epochs, continuous across the two stages
    for key in ("loss", "loss_bce", "loss_dice", "dice", "iou"):
        logged = scalars[f"{key}/epoch"]
        assert [step for step, _ in logged] == steps, key
        # TensorBoard keeps float32
        assert [value for _, value in logged] == pytest.approx(frame[key].tolist(), rel=1e-6), key
