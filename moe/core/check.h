// Check macros for programmer invariants and for the return codes of every
// CUDA / cuBLAS / NCCL / MPI call. A failed check prints the expression,
// file:line, the rank and host, then ends the whole job (see SetFatalHook).
// Input from the outside world is reported with absl::Status instead.
#pragma once

#include <sstream>
#include <string>

namespace sb {

// Called by a failed check after printing; parallel/ installs MPI_Abort here
// so that one failing rank ends the job instead of leaving the others hung.
using FatalHook = void (*)();
void SetFatalHook(FatalHook hook);
// Rank shown in failure messages (-1 until parallel/ sets it).
void SetProcessRank(int rank);
int ProcessRank();

[[noreturn]] void FailCheck(const char* file, int line, const char* expr,
                            const std::string& message);

namespace internal {
// Collects "<< a << b" after a failed check and fails when destroyed.
class CheckMessage {
 public:
  CheckMessage(const char* file, int line, const char* expr)
      : file_(file), line_(line), expr_(expr) {}
  [[noreturn]] ~CheckMessage() { FailCheck(file_, line_, expr_, stream_.str()); }
  template <typename T>
  CheckMessage& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  const char* file_;
  int line_;
  const char* expr_;
  std::ostringstream stream_;
};
// Lets "SB_CHECK(x) << ..." be a void expression in both branches.
struct Voidify {
  void operator&(const CheckMessage&) {}
};
}  // namespace internal
}  // namespace sb

// SB_CHECK(cond) << "more context";
#define SB_CHECK(cond)          \
  (cond) ? (void)0              \
         : ::sb::internal::Voidify() & ::sb::internal::CheckMessage(__FILE__, __LINE__, #cond)

#define SB_CHECK_EQ(a, b) SB_CHECK((a) == (b)) << "(" << (a) << " vs " << (b) << ") "
#define SB_CHECK_LE(a, b) SB_CHECK((a) <= (b)) << "(" << (a) << " vs " << (b) << ") "
#define SB_CHECK_LT(a, b) SB_CHECK((a) < (b)) << "(" << (a) << " vs " << (b) << ") "
#define SB_CHECK_GE(a, b) SB_CHECK((a) >= (b)) << "(" << (a) << " vs " << (b) << ") "
