// Event files against TensorBoard's own writer: tests/golden/tensorboard/
// golden.tfevents was written by tensorboard 2.21's RecordWriter from its
// event_pb2 messages (tests/reference/make_tensorboard_golden.py); writing the
// same events here must give the same bytes, and our reader must take the
// file apart with both CRCs checked. CRC-32C against RFC 3720's check values.
#include "launch/tensorboard/event_writer.h"

#include <cstdlib>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "launch/tensorboard/crc32c.h"
#include "tests/testing/files.h"

namespace sb {
namespace {

std::string GoldenPath() {
  const char* root = std::getenv("SB_SOURCE_DIR");
  return std::string(root ? root : ".") + "/tests/golden/tensorboard/golden.tfevents";
}

constexpr double kWall = 1700000000.25;  // make_tensorboard_golden.py: WALL

// The events of make_tensorboard_golden.py's events(), through EventWriter.
void WriteGoldenEvents(EventWriter& w) {
  ASSERT_TRUE(w.WriteScalars(10, kWall + 10,
                             {{"train/loss", 4.25}, {"train/lr", 3e-3}, {"train/grad_norm", 0.0},
                              {"perf/mfu", 0.4375}})
                  .ok());
  ASSERT_TRUE(w.WriteHistogram(10, kWall + 10, "moe/layer_0/expert_load",
                               CountsHistogram({0, 3, 0, 5, 1, 0}))
                  .ok());
  ASSERT_TRUE(w.WriteSessionStart(20, kWall + 20).ok());
  ASSERT_TRUE(w.Flush().ok());
}

TEST(Crc32cTest, Rfc3720CheckValues) {
  const std::string digits = "123456789";
  EXPECT_EQ(Crc32c(digits.data(), digits.size()), 0xE3069283u);
  std::string zeros(32, '\0'), ones(32, '\xff'), up(32, '\0'), down(32, '\0');
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<char>(i);
    down[i] = static_cast<char>(31 - i);
  }
  EXPECT_EQ(Crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(up.data(), 32), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(down.data(), 32), 0x113FDB5Cu);
  // Continuing a CRC over a split buffer equals one pass.
  EXPECT_EQ(Crc32c(digits.data() + 4, 5, Crc32c(digits.data(), 4)), 0xE3069283u);
}

TEST(EventWriterTest, SameBytesAsTensorBoardsWriter) {
  const std::string golden = testing::ReadBytes(GoldenPath());
  ASSERT_EQ(golden.size(), 383u) << "missing or changed " << GoldenPath();
  testing::TempDir dir;
  std::string path;
  {
    auto w = EventWriter::Create(dir.Path("tb"), kWall);
    ASSERT_TRUE(w.ok()) << w.status();
    WriteGoldenEvents(**w);
    path = (*w)->path();
  }
  EXPECT_EQ(std::filesystem::path(path).filename().string().rfind("events.out.tfevents.1700000000.", 0), 0u)
      << path;
  const std::string ours = testing::ReadBytes(path);
  ASSERT_EQ(ours.size(), golden.size());
  for (size_t i = 0; i < golden.size(); ++i) {
    ASSERT_EQ(static_cast<unsigned char>(ours[i]), static_cast<unsigned char>(golden[i]))
        << "first difference at byte " << i << " of " << golden.size();
  }
}

TEST(EventWriterTest, ReadsTensorBoardsRecords) {
  auto records = ReadTfRecords(testing::ReadBytes(GoldenPath()));
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 4u);
  std::vector<tensorboard::Event> e(4);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(e[i].ParseFromString((*records)[i])) << "record " << i;
  EXPECT_EQ(e[0].file_version(), "brain.Event:2");
  EXPECT_EQ(e[0].wall_time(), kWall);
  ASSERT_EQ(e[1].summary().value_size(), 4);
  EXPECT_EQ(e[1].step(), 10);
  EXPECT_EQ(e[1].summary().value(0).tag(), "train/loss");
  EXPECT_EQ(e[1].summary().value(0).simple_value(), 4.25f);
  EXPECT_TRUE(e[1].summary().value(2).has_simple_value());  // a 0 in a oneof is still written
  const tensorboard::HistogramProto& h = e[2].summary().value(0).histo();
  EXPECT_EQ(h.min(), 0.5);
  EXPECT_EQ(h.max(), 4.5);
  EXPECT_EQ(h.num(), 9.0);
  EXPECT_EQ(h.sum(), 1 * 3 + 3 * 5 + 4 * 1.0);
  EXPECT_EQ(h.sum_squares(), 1 * 3 + 9 * 5 + 16 * 1.0);
  ASSERT_EQ(h.bucket_size(), 6);
  EXPECT_EQ(h.bucket(3), 5.0);
  EXPECT_EQ(h.bucket_limit(5), 5.5);
  EXPECT_EQ(e[3].session_log().status(), tensorboard::SessionLog::START);
  EXPECT_EQ(e[3].step(), 20);
}

TEST(EventWriterTest, CorruptionIsDetected) {
  const std::string golden = testing::ReadBytes(GoldenPath());
  ASSERT_FALSE(golden.empty());
  std::string flipped = golden;
  flipped[70] ^= 0x01;  // inside the second record's payload
  auto r = ReadTfRecords(flipped);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("payload CRC mismatch"), std::string::npos) << r.status();
  std::string bad_length = golden;
  bad_length[0] ^= 0x01;
  r = ReadTfRecords(bad_length);
  EXPECT_NE(r.status().message().find("length CRC"), std::string::npos) << r.status();
  r = ReadTfRecords(golden.substr(0, golden.size() - 3));
  EXPECT_NE(r.status().message().find("file ends first"), std::string::npos) << r.status();
}

TEST(EventWriterTest, EmptyLoadHistogram) {
  const tensorboard::HistogramProto h = CountsHistogram({0, 0, 0});
  EXPECT_EQ(h.num(), 0.0);
  EXPECT_EQ(h.min(), 0.0);
  EXPECT_EQ(h.max(), 0.0);
  EXPECT_EQ(h.bucket_size(), 3);
}

TEST(EventWriterTest, NeverOverwritesAFile) {
  testing::TempDir dir;
  auto a = EventWriter::Create(dir.path(), kWall);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE((*a)->WriteScalars(1, kWall, {{"x", 1.0}}).ok());
  ASSERT_TRUE((*a)->Flush().ok());
  const std::string before = testing::ReadBytes((*a)->path());
  auto b = EventWriter::Create(dir.path(), kWall);  // same second, host and pid
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE((*b)->path(), (*a)->path());
  EXPECT_EQ(testing::ReadBytes((*a)->path()), before);
  auto missing = EventWriter::Create("/proc/sb_no_such_dir/tb", kWall);
  EXPECT_FALSE(missing.ok());
}

}  // namespace
}  // namespace sb
