// Corpus input for prepare-data: expands --input paths into files and reads
// their documents. A plain text file is one document; a JSON-lines file
// (*.jsonl, *.ndjson) holds one document per non-empty line, a JSON object
// whose string field `text_field` is the text. Directories are walked
// recursively in sorted path order, skipping names that start with '.',
// files with a NUL byte (binary) and, when `extensions` is set, files whose
// name does not end with one of them. Invalid UTF-8 follows data/utf8.h.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sb {

enum class InvalidUtf8Policy { kReplace, kError };

struct CorpusOptions {
  std::string text_field = "text";      // JSON-lines field holding the text
  std::vector<std::string> extensions;  // e.g. {".c", ".h"}; empty: all files
  InvalidUtf8Policy invalid_utf8 = InvalidUtf8Policy::kReplace;
};

struct CorpusFile {
  std::string path;
  int64_t bytes = 0;
  bool json_lines = false;
  bool explicit_input = false;  // named on the command line (not found in a walk)
};

// Files of all inputs, in input order then sorted path order. Errors for a
// missing input, an input directory with no usable file, and when every
// file is empty.
absl::StatusOr<std::vector<CorpusFile>> ListCorpusFiles(const std::vector<std::string>& inputs,
                                                        const CorpusOptions& options);

struct CorpusStats {
  int64_t documents = 0;
  int64_t empty_documents = 0;   // skipped: no text
  int64_t skipped_binary = 0;    // files skipped for holding a NUL byte
  int64_t utf8_replaced = 0;     // bytes replaced by U+FFFD
};

// Calls `fn(text, bytes_consumed)` for each non-empty document of `file`, in
// order; bytes_consumed counts the input bytes read so far for this file
// (progress). Stops at the first error from the file or from `fn`.
using DocumentFn = std::function<absl::Status(std::string&& text, int64_t bytes_consumed)>;
absl::Status ReadDocuments(const CorpusFile& file, const CorpusOptions& options,
                           CorpusStats* stats, const DocumentFn& fn);

}  // namespace sb
