// UTF-8 validation and repair for corpus text. prepare-data's policy
// (docs/data.md, "Errors"): by default every byte that is not part of a
// well-formed UTF-8 sequence (RFC 3629: no overlongs, no surrogates, nothing
// above U+10FFFF) is replaced by U+FFFD and the file is named in a warning;
// with --invalid_utf8=error the first such byte is an error.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sb {

// Byte offset of the first ill-formed byte, or -1 when `text` is valid.
int64_t FirstInvalidUtf8(std::string_view text);
// Replaces each ill-formed byte with U+FFFD (EF BF BD); returns how many.
int64_t ReplaceInvalidUtf8(std::string* text);

}  // namespace sb
