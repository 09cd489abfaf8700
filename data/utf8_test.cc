// UTF-8 validation follows Unicode's well-formedness table: overlongs,
// surrogates, code points above U+10FFFF and truncated sequences are
// invalid, and each invalid byte becomes one U+FFFD.
#include "data/utf8.h"

#include <gtest/gtest.h>

namespace sb {
namespace {

TEST(Utf8Test, AcceptsWellFormedText) {
  EXPECT_EQ(FirstInvalidUtf8(""), -1);
  EXPECT_EQ(FirstInvalidUtf8("plain ASCII\n"), -1);
  EXPECT_EQ(FirstInvalidUtf8("na\xC3\xAFve \xE6\x9D\xB1\xE4\xBA\xAC \xF0\x9F\x98\x80"), -1);
  EXPECT_EQ(FirstInvalidUtf8("\xF4\x8F\xBF\xBF"), -1);  // U+10FFFF
}

TEST(Utf8Test, FindsIllFormedBytes) {
  EXPECT_EQ(FirstInvalidUtf8("ab\xFF"), 2);
  EXPECT_EQ(FirstInvalidUtf8("\xC0\xAF"), 0);          // overlong '/'
  EXPECT_EQ(FirstInvalidUtf8("\xE0\x80\xAF"), 0);      // overlong
  EXPECT_EQ(FirstInvalidUtf8("x\xED\xA0\x80"), 1);     // surrogate U+D800
  EXPECT_EQ(FirstInvalidUtf8("\xF4\x90\x80\x80"), 0);  // above U+10FFFF
  EXPECT_EQ(FirstInvalidUtf8("abc\xE6\x9D"), 3);       // truncated at the end
  EXPECT_EQ(FirstInvalidUtf8("caf\xE9!"), 3);          // Latin-1 e-acute
}

TEST(Utf8Test, ReplacesEachBadByteWithUFFFD) {
  std::string text = "caf\xE9 ok \xFF\xFE end";
  EXPECT_EQ(ReplaceInvalidUtf8(&text), 3);
  EXPECT_EQ(text, "caf\xEF\xBF\xBD ok \xEF\xBF\xBD\xEF\xBF\xBD end");
  EXPECT_EQ(FirstInvalidUtf8(text), -1);
  std::string good = "fine \xE2\x9C\x93";
  EXPECT_EQ(ReplaceInvalidUtf8(&good), 0);
  EXPECT_EQ(good, "fine \xE2\x9C\x93");
}

}  // namespace
}  // namespace sb
