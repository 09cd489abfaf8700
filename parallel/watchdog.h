// Collective watchdog: a collective that has not finished after
// parallel.collective_timeout_s ends the whole job with a message that names
// the ranks that stopped answering, instead of a silent hang.
//
// Why: mpirun notices a rank that dies (SIGKILL, crash) and kills the job,
// but not a rank that is alive and unreachable (a cut network link, a
// stopped process): MPI over TCP then waits forever. NCCL's watchdog (as in
// PyTorch's ProcessGroupNCCL) solves the same problem the same way.
//
// How: the communicators mark each blocking MPI call with a Scope. A thread
// checks the mark every 100 ms. On timeout it runs a census on a private
// duplicate of MPI_COMM_WORLD: it pings every rank and waits up to
// census_seconds for replies; the same thread on every rank answers pings at
// any time (with what its rank is doing), so live ranks answer even while
// their main thread is blocked. Ranks that do not answer are named (with
// their host) in the FATAL message; then MPI_Abort ends the job, and an
// alarm() fallback ends this process if MPI_Abort itself cannot reach
// mpirun. The census needs MPI_THREAD_MULTIPLE; without it the watchdog
// still aborts, without naming ranks.
//
// Device collectives (NCCL) do not block the host thread where they are
// enqueued, so a Scope cannot see them: their communicators register a
// WatchdogProbe that the same thread polls (the oldest unfinished operation,
// ncclCommGetAsyncError). A probe's failure or timeout ends the job the same
// way, after the probes' Abort (ncclCommAbort frees GPU kernels that wait
// for a lost peer), as PyTorch's ProcessGroupNCCL watchdog does.
#pragma once

#include <mpi.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sb {

// Another transport's in-flight work, polled by the watchdog thread.
class WatchdogProbe {
 public:
  virtual ~WatchdogProbe() = default;
  struct Status {
    std::string error;      // non-empty: the transport failed (an NCCL async error)
    std::string op, group;  // the oldest unfinished operation (empty: none)
    double waited_s = 0;    // since it was started
  };
  virtual Status Poll() = 0;
  // The job is ending: release what may be blocked on lost peers.
  virtual void Abort() = 0;
};

class Watchdog {
 public:
  // census_comm: a duplicate of MPI_COMM_WORLD owned by the watchdog (freed
  // by Stop); hosts: host name of every world rank. census: the MPI library
  // gave MPI_THREAD_MULTIPLE.
  Watchdog(MPI_Comm census_comm, std::vector<std::string> hosts, bool census);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Seconds a collective may take; <= 0 disables the timeout (the census
  // still answers other ranks).
  void SetTimeout(double seconds);
  double timeout() const { return timeout_s_.load(); }
  // Stops the thread and frees the census communicator (before MPI_Finalize).
  void Stop();
  // Polled every 100 ms until removed; must stay alive until RemoveProbe.
  void AddProbe(WatchdogProbe* probe);
  void RemoveProbe(WatchdogProbe* probe);

  // Marks the calling thread as inside one blocking collective.
  class Scope {
   public:
    // op and group must outlive the scope (string literals, communicator names).
    Scope(Watchdog* watchdog, const char* op, const char* group);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Watchdog* watchdog_;
  };

 private:
  struct Report;  // what a rank answers to a census ping
  void Loop();
  void AnswerPings();
  Report CurrentReport() const;
  // Checks the probes; fires on an error or a timeout.
  void PollProbes(double timeout);
  // what: the headline after "FATAL [rank r on host] ".
  [[noreturn]] void Fire(const std::string& what);

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  std::vector<std::string> hosts_;
  bool census_;
  std::atomic<double> timeout_s_{0.0};
  std::atomic<bool> stop_{false};
  bool stopped_ = false;
  // The collective in progress (enter_ns_ == 0: none) and the last one.
  std::atomic<int64_t> enter_ns_{0};
  std::atomic<int64_t> leave_ns_{0};
  std::atomic<int64_t> seq_{0};
  std::atomic<const char*> op_{""};
  std::atomic<const char*> group_{""};
  // Census state, touched only by the watchdog thread.
  MPI_Request ping_request_ = MPI_REQUEST_NULL;
  int ping_buffer_ = 0;
  std::vector<MPI_Request> pending_sends_;
  std::vector<std::vector<char>> pending_payloads_;
  std::mutex probes_mu_;
  std::vector<WatchdogProbe*> probes_;
  std::thread thread_;
};

}  // namespace sb
