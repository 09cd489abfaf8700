#include "launch/stop_signals.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "moe/core/check.h"

namespace sb {
namespace {

constexpr int kSignals[] = {SIGTERM, SIGINT, SIGUSR1};

std::atomic<int> first_signal{0};
std::atomic<int> signal_count{0};
std::atomic<bool> announce_first{false};
std::atomic<bool> installed{false};
std::atomic<int> saved_exit_code{0};  // non-zero: ExitOnNextSignal was called
struct sigaction previous[sizeof(kSignals) / sizeof(kSignals[0])];

static_assert(std::atomic<int>::is_always_lock_free, "signal handlers need lock-free atomics");

void Write(const char* text) {
  const ssize_t unused = ::write(STDERR_FILENO, text, std::strlen(text));
  (void)unused;
}

void OnSignal(int sig) {
  const int saved_errno = errno;  // a handler must not disturb the interrupted code's errno
  if (const int code = saved_exit_code.load(); code != 0) ::_exit(code);  // nothing left to save
  if (signal_count.fetch_add(1) == 0) {
    first_signal.store(sig);
    if (announce_first.load()) {
      Write("\nswitchboard train: ");
      Write(StopSignalName(sig));
      Write(": finishing this step, then saving a checkpoint; send it again to stop at once\n");
    }
  } else {
    // Second signal: the default action, now. The signal is blocked while
    // its handler runs, so raise() delivers it as soon as we return.
    Write("\nswitchboard train: ");
    Write(StopSignalName(sig));
    Write(" again: stopping at once, without a checkpoint\n");
    ::signal(sig, SIG_DFL);
    ::raise(sig);
  }
  errno = saved_errno;
}

}  // namespace

const char* StopSignalName(int signal) {
  switch (signal) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    default: return "a signal";
  }
}

StopSignals::StopSignals(bool announce) {
  SB_CHECK(!installed.exchange(true)) << "StopSignals installed twice";
  first_signal.store(0);
  signal_count.store(0);
  saved_exit_code.store(0);
  announce_first.store(announce);
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (size_t i = 0; i < sizeof(kSignals) / sizeof(kSignals[0]); ++i) {
    SB_CHECK(::sigaction(kSignals[i], &action, &previous[i]) == 0) << "sigaction " << kSignals[i];
  }
}

StopSignals::~StopSignals() {
  // After ExitOnNextSignal the handlers stay until the process ends.
  if (saved_exit_code.load() == 0) {
    for (size_t i = 0; i < sizeof(kSignals) / sizeof(kSignals[0]); ++i)
      ::sigaction(kSignals[i], &previous[i], nullptr);
  }
  installed.store(false);
}

int StopSignals::received() { return first_signal.load(); }

void StopSignals::ExitOnNextSignal(int exit_code) {
  SB_CHECK(installed.load()) << "ExitOnNextSignal needs live StopSignals";
  SB_CHECK(exit_code != 0);
  saved_exit_code.store(exit_code);
}

}  // namespace sb
