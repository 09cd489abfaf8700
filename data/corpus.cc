#include "data/corpus.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "data/utf8.h"

namespace sb {
namespace fs = std::filesystem;
namespace {

bool IsJsonLines(const fs::path& path) {
  const std::string ext = path.extension().string();
  return ext == ".jsonl" || ext == ".ndjson";
}

bool WantedExtension(const fs::path& path, const CorpusOptions& options) {
  if (options.extensions.empty()) return true;
  const std::string name = path.filename().string();
  for (const std::string& ext : options.extensions) {
    if (absl::EndsWith(name, ext)) return true;
  }
  return false;
}

// Applies the UTF-8 policy to one document; `where` names it in messages.
absl::Status CheckUtf8(std::string* text, const CorpusOptions& options, const std::string& where,
                       int64_t* replaced) {
  if (options.invalid_utf8 == InvalidUtf8Policy::kError) {
    const int64_t bad = FirstInvalidUtf8(*text);
    if (bad >= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": invalid UTF-8 at byte ", bad,
          " (--invalid_utf8=replace substitutes U+FFFD instead)"));
    }
    return absl::OkStatus();
  }
  *replaced += ReplaceInvalidUtf8(text);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<CorpusFile>> ListCorpusFiles(const std::vector<std::string>& inputs,
                                                        const CorpusOptions& options) {
  if (inputs.empty()) return absl::InvalidArgumentError("no --input given");
  std::vector<CorpusFile> files;
  int64_t total_bytes = 0;
  for (const std::string& input : inputs) {
    std::error_code ec;
    if (fs::is_regular_file(input, ec)) {
      const int64_t size = static_cast<int64_t>(fs::file_size(input, ec));
      if (size == 0) return absl::InvalidArgumentError(absl::StrCat("input file is empty: ", input));
      files.push_back({input, size, IsJsonLines(input), true});
      total_bytes += size;
      continue;
    }
    if (!fs::is_directory(input, ec)) {
      return absl::NotFoundError(absl::StrCat("input not found: ", input));
    }
    std::vector<CorpusFile> found;
    auto it = fs::recursive_directory_iterator(input, ec);
    for (; !ec && it != fs::end(it); it.increment(ec)) {
      if (it->path().filename().string().rfind('.', 0) == 0) {  // .git, .cache, ...
        if (it->is_directory(ec)) it.disable_recursion_pending();
        continue;
      }
      if (!it->is_regular_file(ec) || !WantedExtension(it->path(), options)) continue;
      const int64_t size = static_cast<int64_t>(it->file_size(ec));
      found.push_back({it->path().string(), size, IsJsonLines(it->path()), false});
    }
    if (ec) return absl::NotFoundError(absl::StrCat("cannot list ", input, ": ", ec.message()));
    if (found.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "no input files under ", input,
          options.extensions.empty()
              ? std::string()
              : absl::StrCat(" with extensions ", absl::StrJoin(options.extensions, ","))));
    }
    std::sort(found.begin(), found.end(),
              [](const CorpusFile& a, const CorpusFile& b) { return a.path < b.path; });
    for (const CorpusFile& f : found) total_bytes += f.bytes;
    files.insert(files.end(), found.begin(), found.end());
  }
  if (total_bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("empty input: ", absl::StrJoin(inputs, ", "), " hold 0 bytes of text"));
  }
  return files;
}

absl::Status ReadDocuments(const CorpusFile& file, const CorpusOptions& options,
                           CorpusStats* stats, const DocumentFn& fn) {
  std::ifstream in(file.path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", file.path));
  if (!file.json_lines) {
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) return absl::InternalError(absl::StrCat("read error in ", file.path));
    if (text.find('\0') != std::string::npos) {
      if (file.explicit_input) {
        return absl::InvalidArgumentError(
            absl::StrCat(file.path, ": holds NUL bytes; not a text file"));
      }
      ++stats->skipped_binary;
      return absl::OkStatus();
    }
    const int64_t bytes = static_cast<int64_t>(text.size());
    if (absl::Status s = CheckUtf8(&text, options, file.path, &stats->utf8_replaced); !s.ok()) {
      return s;
    }
    if (text.empty()) {
      ++stats->empty_documents;
      return absl::OkStatus();
    }
    ++stats->documents;
    return fn(std::move(text), bytes);
  }
  std::string line;
  int64_t line_number = 0, consumed = 0;
  while (std::getline(in, line)) {
    ++line_number;
    consumed += static_cast<int64_t>(line.size()) + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = absl::StrCat(file.path, ":", line_number);
    if (absl::Status s = CheckUtf8(&line, options, where, &stats->utf8_replaced); !s.ok()) {
      return s;
    }
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_discarded()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": not valid JSON"));
    }
    const auto field = record.is_object() ? record.find(options.text_field) : record.end();
    if (!record.is_object() || field == record.end() || !field->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": expected a JSON object with a string field \"", options.text_field,
          "\" (--text_field names another)"));
    }
    std::string text = field->get<std::string>();
    if (text.empty()) {
      ++stats->empty_documents;
      continue;
    }
    ++stats->documents;
    if (absl::Status s = fn(std::move(text), std::min(consumed, file.bytes)); !s.ok()) return s;
  }
  if (in.bad()) return absl::InternalError(absl::StrCat("read error in ", file.path));
  return absl::OkStatus();
}

}  // namespace sb
