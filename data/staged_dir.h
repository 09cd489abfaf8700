// An output directory that appears complete or not at all: everything is
// written into a hidden sibling "<parent>/.<name>.tmp-<pid>" and renamed to
// the final path by Commit(); without Commit() (an error, an exception) the
// destructor removes it. rename(2) within one directory is atomic, so a later
// run never sees half-written output at the final path. A process killed
// with SIGKILL leaves only the hidden temp directory, which nothing reads.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sb {

class StagedDir {
 public:
  // Fails when `final_path` exists (unless `overwrite`) or its parent is not
  // a writable directory (it is created when missing).
  static absl::StatusOr<StagedDir> Create(const std::string& final_path, bool overwrite);
  StagedDir(StagedDir&& other) noexcept;
  StagedDir& operator=(StagedDir&&) = delete;
  ~StagedDir();

  // Where to write now.
  const std::string& path() const { return temp_path_; }
  // Moves the staged directory to the final path (replacing an old one when
  // overwriting: old -> backup, staged -> final, backup removed).
  absl::Status Commit();

 private:
  StagedDir(std::string final_path, std::string temp_path, bool overwrite);
  std::string final_path_;
  std::string temp_path_;
  bool overwrite_ = false;
  bool active_ = false;  // temp dir exists and is ours to remove
};

}  // namespace sb
