// The safetensors reader: mmap, header validation, and decoding of one
// tensor's bytes into a Tensor (dtype conversion on the host, then a copy to
// the tensor's device). The writer is in safetensors_write.cc.
#include "moe/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "moe/io/checksum.h"
#include "moe/io/file_util.h"
#include "moe/io/half.h"
#include "moe/ops/ops.h"

namespace sb {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data are little-endian; this reader copies bytes as they are");

namespace {

// The tensor dtype with the same representation, if any (F16 has none).
std::optional<DType> SameRepresentation(SafetensorsDType d) {
  switch (d) {
    case SafetensorsDType::kF64: return DType::kF64;
    case SafetensorsDType::kF32: return DType::kF32;
    case SafetensorsDType::kBF16: return DType::kBF16;
    case SafetensorsDType::kI64: return DType::kI64;
    case SafetensorsDType::kI32: return DType::kI32;
    case SafetensorsDType::kF16: return std::nullopt;
  }
  return std::nullopt;
}

absl::Status DecodeError(absl::string_view label, const SafetensorsTensorInfo& info,
                         absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(label, ": tensor ", QuoteTensorName(info.name), ": ", what));
}

}  // namespace

SafetensorsDType SafetensorsDTypeOf(DType dtype) {
  switch (dtype) {
    case DType::kF64: return SafetensorsDType::kF64;
    case DType::kF32: return SafetensorsDType::kF32;
    case DType::kBF16: return SafetensorsDType::kBF16;
    case DType::kI64: return SafetensorsDType::kI64;
    case DType::kI32: return SafetensorsDType::kI32;
  }
  SB_CHECK(false) << "unknown dtype " << static_cast<int>(dtype);
  return SafetensorsDType::kF32;
}

absl::Status DecodeSafetensorsTensor(absl::string_view label, const SafetensorsTensorInfo& info,
                                     const uint8_t* bytes, const Tensor& dst) {
  if (!dst.defined()) return DecodeError(label, info, "destination tensor is undefined");
  if (info.shape != dst.shape()) {
    return DecodeError(label, info,
                       absl::StrCat("shape ", ShapeToString(info.shape), " in the file, ",
                                    ShapeToString(dst.shape()), " expected"));
  }
  const bool same = SameRepresentation(info.dtype) == dst.dtype();
  if (!same && !(IsFloat(info.dtype) && IsFloating(dst.dtype()))) {
    return DecodeError(label, info,
                       absl::StrCat("dtype ", SafetensorsDTypeName(info.dtype),
                                    " in the file cannot be read into ", DTypeName(dst.dtype())));
  }
  const int64_t n = info.numel();
  if (n == 0) return absl::OkStatus();
  const size_t nbytes = info.end - info.begin;  // == n * element size (validated)

  const bool on_host = dst.device() == Device::kCpu;
  const Tensor host = on_host ? dst : Tensor::Empty(dst.shape(), dst.dtype());
  if (same) {
    std::memcpy(host.raw(), bytes, nbytes);
  } else if (info.dtype == SafetensorsDType::kF16) {
    // Every half is exactly a float; one more rounding only for bf16.
    const Tensor f32 = host.dtype() == DType::kF32 ? host : Tensor::Empty(dst.shape());
    float* out = f32.data<float>();
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, bytes + 2 * i, sizeof(h));  // file data need not be aligned
      out[i] = HalfToFloat(h);
    }
    if (host.dtype() != DType::kF32) ops::Convert(f32, host);
  } else {
    const Tensor staged = Tensor::Empty(dst.shape(), *SameRepresentation(info.dtype));
    std::memcpy(staged.raw(), bytes, nbytes);
    ops::Convert(staged, host);
  }
  if (!on_host) ops::Copy(host, dst);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(path, "open");
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status status = ErrnoError(path, "stat");
    ::close(fd);
    return status;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    // MAP_PRIVATE + PROT_READ: we never write; pages load lazily. A file
    // truncated by someone else while mapped raises SIGBUS: checkpoints are
    // replaced by rename, never rewritten in place, so this does not happen.
    void* map = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      absl::Status status = ErrnoError(path, "mmap");
      ::close(fd);
      return status;
    }
    file->map_ = static_cast<const uint8_t*>(map);
  }
  ::close(fd);  // the mapping keeps the file open
  absl::StatusOr<SafetensorsHeader> header = ParseSafetensorsHeader(path, file->map_, file->size_);
  if (!header.ok()) return header.status();
  file->header_ = *std::move(header);
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(const_cast<uint8_t*>(map_), size_);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(header_.tensors.size());
  for (const SafetensorsTensorInfo& t : header_.tensors) out.push_back(t.name);
  return out;
}

absl::StatusOr<SafetensorsTensorInfo> SafetensorsFile::Info(absl::string_view name) const {
  const SafetensorsTensorInfo* info = Find(name);
  if (info == nullptr)
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor ", QuoteTensorName(name)));
  return *info;
}

absl::Status SafetensorsFile::ReadInto(absl::string_view name, const Tensor& dst) const {
  const SafetensorsTensorInfo* info = Find(name);
  if (info == nullptr)
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor ", QuoteTensorName(name)));
  if (absl::Status s = Verify(*info); !s.ok()) return s;
  return DecodeSafetensorsTensor(path_, *info, map_ + header_.data_start + info->begin, dst);
}

absl::Status SafetensorsFile::Verify(const SafetensorsTensorInfo& info) const {
  if (!info.checksum) return absl::OkStatus();
  const uint64_t actual =
      Xxh3_64(map_ + header_.data_start + info.begin, static_cast<size_t>(info.end - info.begin));
  if (actual == *info.checksum) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat(
      path_, ": tensor ", QuoteTensorName(info.name), ": checksum mismatch: its ",
      info.end - info.begin, " data bytes hash to ", ChecksumHex(actual), ", the file recorded ",
      ChecksumHex(*info.checksum), " when it was written (the data were changed since)"));
}

absl::Status SafetensorsFile::VerifyChecksums() const {
  for (const SafetensorsTensorInfo& info : header_.tensors)
    if (absl::Status s = Verify(info); !s.ok()) return s;
  return absl::OkStatus();
}

absl::Status SafetensorsFile::ReadRangeInto(absl::string_view name, int64_t first,
                                            const Tensor& dst) const {
  const SafetensorsTensorInfo* info = Find(name);
  if (info == nullptr)
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor ", QuoteTensorName(name)));
  const int64_t count = dst.defined() ? dst.numel() : 0;
  if (first < 0 || count > info->numel() - first) {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": tensor ", QuoteTensorName(name), " ", ShapeToString(info->shape),
        ": elements [", first, ", ", first + count, ") are out of range"));
  }
  if (absl::Status s = Verify(*info); !s.ok()) return s;  // the whole tensor's checksum
  // The part is itself a tensor of dst's shape at a byte offset (validated sizes).
  const uint64_t element = SafetensorsDTypeSize(info->dtype);
  SafetensorsTensorInfo part = *info;
  part.shape = dst.shape();
  part.begin = info->begin + static_cast<uint64_t>(first) * element;
  part.end = part.begin + static_cast<uint64_t>(count) * element;
  return DecodeSafetensorsTensor(path_, part, map_ + header_.data_start + part.begin, dst);
}

}  // namespace sb
