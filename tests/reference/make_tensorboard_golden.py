#!/usr/bin/env python3
"""Writes tests/golden/tensorboard/golden.tfevents with TensorBoard's own
writer, the known-good bytes that launch/tensorboard/event_writer_test.cc
compares Switchboard's event writer with (CI has no tensorboard package).

  /opt/sb-latest-venv/bin/python tests/reference/make_tensorboard_golden.py [--check]

The events are built from tensorboard.compat.proto (event_pb2, summary_pb2:
TensorFlow's messages as TensorBoard ships them), serialised by Python
protobuf and framed by tensorboard.summary.writer.record_writer.RecordWriter
(TFRecord, masked CRC-32C). The file is then read back with TensorBoard's
EventFileLoader and its histogram conversion (data_compat), and the fields
our event.proto declares are checked against these descriptors. The test
writes the same events with EventWriter and wants the same bytes.
Keep the values here and in event_writer_test.cc ("GoldenEvents") in step.
--check: regenerate in memory and compare with the committed file.
"""
import argparse
import io
import os
import sys
import tempfile

from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import event_pb2, histogram_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util
import tensorboard

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "..", "golden", "tensorboard", "golden.tfevents")
WALL = 1700000000.25  # fixed wall time; step s is written at WALL + s


def expert_histogram(counts):
    """Bucket i = expert i, edges i -/+ 0.5, min / max = outer edges of the
    non-empty range (event_writer.h, CountsHistogram)."""
    nonzero = [i for i, c in enumerate(counts) if c > 0]
    return histogram_pb2.HistogramProto(
        min=nonzero[0] - 0.5 if nonzero else 0.0, max=nonzero[-1] + 0.5 if nonzero else 0.0,
        num=float(sum(counts)), sum=float(sum(i * c for i, c in enumerate(counts))),
        sum_squares=float(sum(i * i * c for i, c in enumerate(counts))),
        bucket_limit=[i + 0.5 for i in range(len(counts))], bucket=[float(c) for c in counts])


def events():
    yield event_pb2.Event(wall_time=WALL, file_version="brain.Event:2")
    scalars = [("train/loss", 4.25), ("train/lr", 3e-3), ("train/grad_norm", 0.0), ("perf/mfu", 0.4375)]
    yield event_pb2.Event(wall_time=WALL + 10, step=10, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in scalars]))
    yield event_pb2.Event(wall_time=WALL + 10, step=10, summary=summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag="moe/layer_0/expert_load", histo=expert_histogram([0, 3, 0, 5, 1, 0]))]))
    yield event_pb2.Event(wall_time=WALL + 20, step=20, session_log=event_pb2.SessionLog(
        status=event_pb2.SessionLog.START))


def golden_bytes():
    buf = io.BytesIO()
    writer = RecordWriter(buf)
    for e in events():
        writer.write(e.SerializeToString())
    return buf.getvalue()


def check_readable(data):
    """TensorBoard's loaders accept the file: the raw records (CRCs checked)
    are our events, and its conversion to the scalar and histogram plugins'
    form (data_compat, what the UI draws) gives the values written."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "events.out.tfevents.golden")
        with open(path, "wb") as f:
            f.write(data)
        raw = list(event_file_loader.RawEventFileLoader(path).Load())
        migrated = list(event_file_loader.EventFileLoader(path).Load())
    assert raw == [e.SerializeToString() for e in events()], "records differ from the events written"
    loss = migrated[1].summary.value[0]
    assert loss.metadata.plugin_data.plugin_name == "scalars" and loss.tensor.float_val == [4.25], loss
    histo = migrated[2].summary.value[0]
    cells = tensor_util.make_ndarray(histo.tensor).tolist()
    assert cells == [[0.5, 1.5, 3.0], [1.5, 2.5, 0.0], [2.5, 3.5, 5.0], [3.5, 4.5, 1.0]], cells
    print("TensorBoard reads it back; the histogram as it draws it ([left, right, count]):", cells)


def check_descriptors():
    """The fields launch/tensorboard/event.proto declares, with their numbers."""
    want = {
        event_pb2.Event: {"wall_time": 1, "step": 2, "file_version": 3, "summary": 5, "session_log": 7},
        event_pb2.SessionLog: {"status": 1, "checkpoint_path": 2, "msg": 3},
        summary_pb2.Summary: {"value": 1},
        summary_pb2.Summary.Value: {"tag": 1, "simple_value": 2, "histo": 5},
        histogram_pb2.HistogramProto: {"min": 1, "max": 2, "num": 3, "sum": 4, "sum_squares": 5,
                                       "bucket_limit": 6, "bucket": 7},
    }
    for msg, fields in want.items():
        for name, number in fields.items():
            f = msg.DESCRIPTOR.fields_by_name[name]
            assert f.number == number, (msg.DESCRIPTOR.full_name, name, f.number)
            print(f"  {msg.DESCRIPTOR.full_name}.{name} = {f.number}{' [packed]' if f.is_packed else ''}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    print(f"tensorboard {tensorboard.__version__}; fields of launch/tensorboard/event.proto:")
    check_descriptors()
    data = golden_bytes()
    check_readable(data)
    if args.check:
        with open(GOLDEN, "rb") as f:
            same = f.read() == data
        print("regenerated identically" if same else "DIFFERS from the committed golden file")
        sys.exit(0 if same else 1)
    os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
    with open(GOLDEN, "wb") as f:
        f.write(data)
    print(f"wrote {os.path.normpath(GOLDEN)} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
