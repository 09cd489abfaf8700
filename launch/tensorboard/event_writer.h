// TensorBoard event files written with the project's protobuf: TFRecord
// framing (tensorflow/core/lib/io/record_writer.cc) of Event messages
// (event.proto here). Each record is
//   uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes |
//   payload | uint32 masked CRC-32C of the payload.
// A file starts with an Event whose file_version is "brain.Event:2".
// `tensorboard --logdir runs/` then shows every run directory as a run.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "launch/tensorboard/event.pb.h"

namespace sb {

// One TFRecord holding `payload`.
std::string TfRecord(const std::string& payload);
// The payloads of the TFRecords in `bytes`, both CRCs checked. DataLoss names
// the offset of a truncated or corrupt record.
absl::StatusOr<std::vector<std::string>> ReadTfRecords(const std::string& bytes);

// TensorBoard histogram of a load vector: bucket i is expert i, spanning
// [i - 0.5, i + 0.5), holding counts[i]. min / max are the outer edges of
// the first / last non-empty bucket, which TensorBoard uses as the outer
// edges when it drops empty end buckets (tensorboard/data_compat.py).
sb::tensorboard::HistogramProto CountsHistogram(const std::vector<int64_t>& counts);

class EventWriter {
 public:
  // Creates `dir` if needed and a new file in it,
  // events.out.tfevents.<unix seconds, 10 digits>.<host>.<pid>.switchboard,
  // beginning with the file_version record. Never appends to an old file:
  // a resumed run adds a file, as TensorFlow's writers do.
  static absl::StatusOr<std::unique_ptr<EventWriter>> Create(const std::string& dir,
                                                             double wall_time);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  const std::string& path() const { return path_; }
  // One event with one simple_value per (tag, value).
  absl::Status WriteScalars(int64_t step, double wall_time,
                            const std::vector<std::pair<std::string, double>>& scalars);
  absl::Status WriteHistogram(int64_t step, double wall_time, const std::string& tag,
                              const sb::tensorboard::HistogramProto& histogram);
  // SessionLog START at `step`: TensorBoard's event accumulator drops the
  // events of this run with step >= `step` that older files hold (a resumed
  // run repeats the steps after its checkpoint).
  absl::Status WriteSessionStart(int64_t step, double wall_time);
  absl::Status Write(const sb::tensorboard::Event& event);
  // fflush: TensorBoard reads files while they grow.
  absl::Status Flush();

 private:
  EventWriter(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}
  std::string path_;
  std::FILE* file_;
};

}  // namespace sb
