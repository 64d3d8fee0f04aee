"""Read TensorBoard event files back (TFRecord framing + tensorboardX protos), for tests."""

import glob
import os
import struct


def read_events(folder):
    """(relative file, Event) for every tensorboard event file below `folder` (TFRecord format)."""
    from tensorboardX.proto import event_pb2

    events = []
    for path in sorted(
        glob.glob(os.path.join(folder, "**", "events.out.tfevents.*"), recursive=True)
    ):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            pos += 12  # length + its crc
            event = event_pb2.Event()
            event.ParseFromString(data[pos : pos + length])
            pos += length + 4  # payload + its crc
            events.append((os.path.relpath(path, folder), event))
    return events


def scalars(folder):
    """{(subfolder, tag, step): value} of every scalar summary below `folder`."""
    out = {}
    for rel, event in read_events(folder):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                out[(os.path.dirname(rel), value.tag, event.step)] = value.simple_value
    return out
