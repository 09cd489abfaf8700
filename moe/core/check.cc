#include "moe/core/check.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace sb {
namespace {
std::atomic<FatalHook> g_fatal_hook{nullptr};
std::atomic<int> g_rank{-1};
}  // namespace

void SetFatalHook(FatalHook hook) { g_fatal_hook.store(hook); }
void SetProcessRank(int rank) { g_rank.store(rank); }
int ProcessRank() { return g_rank.load(); }

void FailCheck(const char* file, int line, const char* expr, const std::string& message) {
  char host[256] = "?";
  gethostname(host, sizeof(host) - 1);
  std::fprintf(stderr, "FATAL [rank %d on %s] %s:%d: check failed: %s %s\n", g_rank.load(),
               host, file, line, expr, message.c_str());
  std::fflush(stderr);
  if (FatalHook hook = g_fatal_hook.load()) hook();
  std::abort();
}

}  // namespace sb
