#include "launch/tensorboard/event_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "launch/tensorboard/crc32c.h"

namespace sb {
namespace {

void AppendLittleEndian(uint64_t v, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}

uint64_t ReadLittleEndian(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<unsigned char>(s[at + i])} << (8 * i);
  return v;
}

std::string HostName() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

}  // namespace

std::string TfRecord(const std::string& payload) {
  std::string out;
  out.reserve(payload.size() + 16);
  AppendLittleEndian(payload.size(), 8, &out);
  AppendLittleEndian(MaskCrc32c(Crc32c(out.data(), 8)), 4, &out);
  out += payload;
  AppendLittleEndian(MaskCrc32c(Crc32c(payload.data(), payload.size())), 4, &out);
  return out;
}

absl::StatusOr<std::vector<std::string>> ReadTfRecords(const std::string& bytes) {
  std::vector<std::string> records;
  size_t at = 0;
  while (at < bytes.size()) {
    if (bytes.size() - at < 12) {
      return absl::DataLossError(absl::StrFormat("record at byte %d: truncated header", at));
    }
    const uint64_t length = ReadLittleEndian(bytes, at, 8);
    if (MaskCrc32c(Crc32c(bytes.data() + at, 8)) != ReadLittleEndian(bytes, at + 8, 4)) {
      return absl::DataLossError(absl::StrFormat("record at byte %d: length CRC mismatch", at));
    }
    if (length > bytes.size() - at - 12 || bytes.size() - at - 12 - length < 4) {
      return absl::DataLossError(
          absl::StrFormat("record at byte %d: %d payload bytes announced, file ends first", at, length));
    }
    std::string payload = bytes.substr(at + 12, length);
    if (MaskCrc32c(Crc32c(payload.data(), payload.size())) !=
        ReadLittleEndian(bytes, at + 12 + length, 4)) {
      return absl::DataLossError(absl::StrFormat("record at byte %d: payload CRC mismatch", at));
    }
    records.push_back(std::move(payload));
    at += 16 + length;
  }
  return records;
}

sb::tensorboard::HistogramProto CountsHistogram(const std::vector<int64_t>& counts) {
  sb::tensorboard::HistogramProto h;
  int64_t first = -1, last = -1;
  double num = 0, sum = 0, sum_squares = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double c = static_cast<double>(counts[i]), x = static_cast<double>(i);
    if (counts[i] > 0) {
      if (first < 0) first = static_cast<int64_t>(i);
      last = static_cast<int64_t>(i);
    }
    num += c;
    sum += c * x;
    sum_squares += c * x * x;
    h.add_bucket_limit(x + 0.5);
    h.add_bucket(c);
  }
  h.set_min(first < 0 ? 0.0 : first - 0.5);
  h.set_max(last < 0 ? 0.0 : last + 0.5);
  h.set_num(num);
  h.set_sum(sum);
  h.set_sum_squares(sum_squares);
  return h;
}

absl::StatusOr<std::unique_ptr<EventWriter>> EventWriter::Create(const std::string& dir,
                                                                 double wall_time) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  // "x": never truncate a file that exists (same second, host and pid: a
  // process that trains twice into one directory); take the next suffix.
  std::string path;
  std::FILE* f = nullptr;
  for (int n = 0; n < 100 && !f; ++n) {
    path = absl::StrFormat("%s/events.out.tfevents.%010d.%s.%d.%sswitchboard", dir,
                           static_cast<int64_t>(wall_time), HostName(), static_cast<int>(getpid()),
                           n ? absl::StrCat(n, ".") : "");
    f = std::fopen(path.c_str(), "wbx");
    if (!f && errno != EEXIST) break;
  }
  if (!f) return absl::PermissionDeniedError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  auto writer = std::unique_ptr<EventWriter>(new EventWriter(path, f));
  sb::tensorboard::Event first;
  first.set_wall_time(wall_time);
  first.set_file_version("brain.Event:2");
  if (absl::Status s = writer->Write(first); !s.ok()) return s;
  if (absl::Status s = writer->Flush(); !s.ok()) return s;
  return writer;
}

EventWriter::~EventWriter() {
  if (file_) std::fclose(file_);
}

absl::Status EventWriter::Write(const sb::tensorboard::Event& event) {
  const std::string record = TfRecord(event.SerializeAsString());
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size()) {
    return absl::DataLossError(absl::StrCat("writing ", path_, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status EventWriter::Flush() {
  if (std::fflush(file_) != 0) {
    return absl::DataLossError(absl::StrCat("writing ", path_, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status EventWriter::WriteScalars(int64_t step, double wall_time,
                                       const std::vector<std::pair<std::string, double>>& scalars) {
  sb::tensorboard::Event e;
  e.set_wall_time(wall_time);
  e.set_step(step);
  for (const auto& [tag, value] : scalars) {
    auto* v = e.mutable_summary()->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  return Write(e);
}

absl::Status EventWriter::WriteHistogram(int64_t step, double wall_time, const std::string& tag,
                                         const sb::tensorboard::HistogramProto& histogram) {
  sb::tensorboard::Event e;
  e.set_wall_time(wall_time);
  e.set_step(step);
  auto* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  *v->mutable_histo() = histogram;
  return Write(e);
}

absl::Status EventWriter::WriteSessionStart(int64_t step, double wall_time) {
  sb::tensorboard::Event e;
  e.set_wall_time(wall_time);
  e.set_step(step);
  e.mutable_session_log()->set_status(sb::tensorboard::SessionLog::START);
  return Write(e);
}

}  // namespace sb
