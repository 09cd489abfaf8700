#include "data/utf8.h"

namespace sb {
namespace {

// Length of the well-formed sequence starting at text[i], or 0 when the
// byte there does not start one (Unicode 15, table 3-7).
size_t ValidSequenceLength(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlongs
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // no overlongs
    if (c == 0xF4) hi = 0x8F;  // <= U+10FFFF
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return n;
}

}  // namespace

int64_t FirstInvalidUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = ValidSequenceLength(text, i);
    if (n == 0) return static_cast<int64_t>(i);
    i += n;
  }
  return -1;
}

int64_t ReplaceInvalidUtf8(std::string* text) {
  const int64_t first = FirstInvalidUtf8(*text);
  if (first < 0) return 0;  // the common case: no copy
  std::string out(*text, 0, static_cast<size_t>(first));
  out.reserve(text->size() + 16);
  int64_t replaced = 0;
  for (size_t i = static_cast<size_t>(first); i < text->size();) {
    const size_t n = ValidSequenceLength(*text, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++replaced;
      ++i;
    } else {
      out.append(*text, i, n);
      i += n;
    }
  }
  *text = std::move(out);
  return replaced;
}

}  // namespace sb
