// Single-file and index-sharded safetensors checkpoints.
#include "moe/io/safetensors_set.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "moe/io/file_util.h"
#include "moe/io/json_strict.h"

namespace sb {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Real indexes are a few hundred KB (one line per tensor).
constexpr size_t kMaxIndexBytes = 100'000'000;

absl::Status IndexError(absl::string_view index, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(index, ": ", what));
}

// A shard file name must stay inside the index's directory.
bool SafeRelativePath(const std::string& p) {
  if (p.empty() || p.front() == '/') return false;
  for (const fs::path& part : fs::path(p))
    if (part == "..") return false;
  return true;
}

std::string Dirname(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsSet>> SafetensorsSet::Open(const std::string& path) {
  std::unique_ptr<SafetensorsSet> set(new SafetensorsSet());
  set->path_ = path;
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) {
    const std::string single = (fs::path(path) / kSafetensorsSingleFile).string();
    const std::string index = (fs::path(path) / kSafetensorsIndexFile).string();
    if (fs::exists(single, ec)) {
      file = single;
    } else if (fs::exists(index, ec)) {
      file = index;
    } else {
      return absl::NotFoundError(absl::StrCat(path, ": a directory with neither ",
                                              kSafetensorsSingleFile, " nor ",
                                              kSafetensorsIndexFile));
    }
  }
  if (absl::EndsWith(file, ".json")) {
    if (absl::Status s = set->OpenIndex(file); !s.ok()) return s;
    return set;
  }
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> opened = SafetensorsFile::Open(file);
  if (!opened.ok()) return opened.status();
  for (const std::string& name : (*opened)->names()) set->owner_[name] = opened->get();
  set->files_.push_back(*std::move(opened));
  return set;
}

absl::Status SafetensorsSet::OpenIndex(const std::string& index_path) {
  absl::StatusOr<std::string> text = ReadSmallFile(index_path, kMaxIndexBytes);
  if (!text.ok()) return text.status();
  absl::StatusOr<json> root = ParseJsonStrict(index_path, *text);
  if (!root.ok()) return root.status();
  if (!root->is_object()) return IndexError(index_path, "not a JSON object");
  const auto map = root->find("weight_map");
  if (map == root->end() || !map->is_object() || map->empty())
    return IndexError(index_path, "no 'weight_map' object with at least one name");

  std::map<std::string, const SafetensorsFile*> shards;  // by name in the index
  const std::string dir = Dirname(index_path);
  for (const auto& [name, shard] : map->items()) {
    if (!shard.is_string() || !SafeRelativePath(shard.get<std::string>())) {
      return IndexError(index_path, absl::StrCat("tensor ", QuoteTensorName(name),
                                                 " maps to something other than a file name "
                                                 "inside the index's directory"));
    }
    const std::string shard_name = shard.get<std::string>();
    auto it = shards.find(shard_name);
    if (it == shards.end()) {
      absl::StatusOr<std::unique_ptr<SafetensorsFile>> opened =
          SafetensorsFile::Open((fs::path(dir) / shard_name).string());
      if (!opened.ok()) {
        return absl::Status(opened.status().code(),
                            absl::StrCat(index_path, ": shard of tensor ", QuoteTensorName(name),
                                         ": ", opened.status().message()));
      }
      it = shards.emplace(shard_name, opened->get()).first;
      files_.push_back(*std::move(opened));
    }
    if (it->second->Find(name) == nullptr) {
      return IndexError(index_path, absl::StrCat("maps tensor ", QuoteTensorName(name), " to ",
                                                 shard_name, ", which does not hold it"));
    }
    owner_[name] = it->second;
  }
  return absl::OkStatus();
}

std::vector<std::string> SafetensorsSet::names() const {
  std::vector<std::string> out;
  out.reserve(owner_.size());
  for (const auto& entry : owner_) out.push_back(entry.first);
  return out;
}

absl::StatusOr<SafetensorsTensorInfo> SafetensorsSet::Info(absl::string_view name) const {
  auto it = owner_.find(name);
  if (it == owner_.end())
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor ", QuoteTensorName(name)));
  return it->second->Info(name);
}

absl::Status SafetensorsSet::ReadInto(absl::string_view name, const Tensor& dst) const {
  auto it = owner_.find(name);
  if (it == owner_.end())
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor ", QuoteTensorName(name)));
  return it->second->ReadInto(name, dst);
}

absl::Status SafetensorsSet::ReadRangeInto(absl::string_view name, int64_t first,
                                           const Tensor& dst) const {
  auto it = owner_.find(name);
  if (it == owner_.end())
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor ", QuoteTensorName(name)));
  return it->second->ReadRangeInto(name, first, dst);
}

absl::Status WriteSafetensorsIndex(const std::string& index_path,
                                   const std::map<std::string, std::string>& weight_map) {
  const std::string dir = Dirname(index_path);
  std::map<std::string, std::unique_ptr<SafetensorsFile>> shards;
  uint64_t total_size = 0;
  for (const auto& [name, shard] : weight_map) {
    if (!SafeRelativePath(shard)) {
      return IndexError(index_path, absl::StrCat("shard ", QuoteTensorName(shard),
                                                 " is not a path inside the index's directory"));
    }
    auto it = shards.find(shard);
    if (it == shards.end()) {
      absl::StatusOr<std::unique_ptr<SafetensorsFile>> opened =
          SafetensorsFile::Open((fs::path(dir) / shard).string());
      if (!opened.ok()) return opened.status();
      it = shards.emplace(shard, *std::move(opened)).first;
    }
    const SafetensorsTensorInfo* info = it->second->Find(name);
    if (info == nullptr) {
      return IndexError(index_path,
                        absl::StrCat("shard ", shard, " has no tensor ", QuoteTensorName(name)));
    }
    total_size += info->end - info->begin;
  }
  json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
  std::string text;
  try {
    text = index.dump(2) + "\n";
  } catch (const json::exception& e) {
    return IndexError(index_path, absl::StrCat("cannot write: ", e.what()));
  }
  return ReplaceFileAtomically(index_path, [&](int fd, const std::string& tmp) {
    return WriteAll(fd, text.data(), text.size(), tmp);
  });
}

}  // namespace sb
