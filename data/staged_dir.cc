#include "data/staged_dir.h"

#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace sb {
namespace fs = std::filesystem;

StagedDir::StagedDir(std::string final_path, std::string temp_path, bool overwrite)
    : final_path_(std::move(final_path)),
      temp_path_(std::move(temp_path)),
      overwrite_(overwrite),
      active_(true) {}

StagedDir::StagedDir(StagedDir&& other) noexcept
    : final_path_(std::move(other.final_path_)),
      temp_path_(std::move(other.temp_path_)),
      overwrite_(other.overwrite_),
      active_(other.active_) {
  other.active_ = false;
}

StagedDir::~StagedDir() {
  if (!active_) return;
  std::error_code ec;
  fs::remove_all(temp_path_, ec);
}

absl::StatusOr<StagedDir> StagedDir::Create(const std::string& final_path, bool overwrite) {
  std::error_code ec;
  fs::path target = fs::path(final_path).lexically_normal();
  if (target.filename().empty()) target = target.parent_path();  // "out/" -> "out"
  if (target.empty()) return absl::InvalidArgumentError("empty output path");
  if (fs::exists(target, ec) && !overwrite) {
    return absl::AlreadyExistsError(absl::StrCat(
        "output ", final_path, " already exists; remove it or pass --overwrite"));
  }
  fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  if (ec || !fs::is_directory(parent)) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create output directory ",
                                                    parent.string(), " for ", final_path, ": ",
                                                    ec ? ec.message() : "not a directory"));
  }
  const fs::path temp =
      parent / absl::StrCat(".", target.filename().string(), ".tmp-", ::getpid());
  fs::remove_all(temp, ec);  // a leftover of an earlier run with our pid
  if (!fs::create_directory(temp, ec) || ec) {
    return absl::PermissionDeniedError(absl::StrCat("cannot write to ", parent.string(), " (for ",
                                                    final_path, "): ", ec.message()));
  }
  return StagedDir(target.string(), temp.string(), overwrite);
}

absl::Status StagedDir::Commit() {
  std::error_code ec;
  std::string backup;
  if (fs::exists(final_path_, ec)) {
    if (!overwrite_) {
      return absl::AlreadyExistsError(absl::StrCat("output ", final_path_,
                                                   " appeared while preparing; not replacing it"));
    }
    backup = absl::StrCat(final_path_, ".old-", ::getpid());
    fs::rename(final_path_, backup, ec);
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot move the old ", final_path_, " aside: ", ec.message()));
    }
  }
  fs::rename(temp_path_, final_path_, ec);
  if (ec) {
    std::error_code restore_ec;
    if (!backup.empty()) fs::rename(backup, final_path_, restore_ec);
    return absl::PermissionDeniedError(
        absl::StrCat("cannot rename ", temp_path_, " to ", final_path_, ": ", ec.message()));
  }
  active_ = false;
  if (!backup.empty()) fs::remove_all(backup, ec);
  return absl::OkStatus();
}

}  // namespace sb
