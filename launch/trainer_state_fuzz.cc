// libFuzzer target for a checkpoint's trainer_state.textproto
// (ParseTrainerState: the text-format parser, the counter checks and the
// saved config's validation). Input layout:
//   byte 0      bit 0 set: the directory is step_<byte >> 1>; clear: no step_N name
//   the rest    the file's text
// Besides crashes, leaks and UB (ASan, UBSan) it checks what the loader
// relies on: errors carry a message; an accepted state has the invariants
// the resume code uses (counters >= 0, optimizer_step <= step, a layout of
// >= 1 rank, a config valid for that layout, step = the directory's N); and
// the state as SaveCheckpoint prints it parses back to the same message.
// Build and run: launch/fuzz_trainer_state.sh, records in docs/checkpoints.md.
#include <cstdint>
#include <optional>
#include <string>

#include "google/protobuf/text_format.h"
#include "launch/checkpoint.h"
#include "tests/testing/proto_equal.h"

namespace {

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::optional<int64_t> dir_step;
  if (data[0] & 1) dir_step = data[0] >> 1;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  const absl::StatusOr<switchboard::TrainerState> state =
      sb::ParseTrainerState(text, "fuzz/trainer_state.textproto", dir_step);
  if (!state.ok()) {
    Require(!state.status().message().empty());
    return 0;
  }
  const switchboard::TrainerState& s = *state;
  Require(s.format_version() >= 1 && s.format_version() <= sb::kCheckpointFormatVersion);
  Require(s.step() >= 0 && s.tokens_seen() >= 0 && s.micro_batches_consumed() >= 0);
  Require(s.optimizer_step() >= 0 && s.optimizer_step() <= s.step());
  Require(s.nonfinite_streak() >= 0 && s.skipped_steps() >= 0);
  Require(s.layout().world_size() >= 1 && s.layout().expert_parallel_size() >= 1 &&
          s.layout().grad_accum_steps() >= 1);
  Require(!dir_step || *dir_step == s.step());
  Require(s.has_config() && sb::ValidateConfig(s.config(), s.layout().world_size()).ok());
  std::string printed;
  Require(google::protobuf::TextFormat::PrintToString(s, &printed));
  const absl::StatusOr<switchboard::TrainerState> back =
      sb::ParseTrainerState(printed, "printed", dir_step);
  Require(back.ok() && sb::testing::SameMessage(*back, s));
  return 0;
}
