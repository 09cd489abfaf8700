// Collective watchdog and the census of live ranks (see watchdog.h).
#include "parallel/watchdog.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "moe/core/check.h"

namespace sb {
namespace {

constexpr int kPingTag = 1;
constexpr int kPongTag = 2;
constexpr auto kPollInterval = std::chrono::milliseconds(100);
// Seconds MPI_Abort may take before alarm() ends this process anyway.
constexpr unsigned kAbortGraceSeconds = 20;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void CopyName(char* dst, size_t size, const char* src) {
  std::strncpy(dst, src ? src : "", size - 1);
  dst[size - 1] = '\0';
}

}  // namespace

// Fixed-size, sent as MPI_BYTE between identical binaries.
struct Watchdog::Report {
  int32_t rank = -1;
  int32_t in_collective = 0;
  int64_t seq = 0;
  double seconds = 0;  // inside the collective, or since the last one ended
  char op[40] = {};
  char group[24] = {};
};

Watchdog::Watchdog(MPI_Comm census_comm, std::vector<std::string> hosts, bool census)
    : comm_(census_comm), hosts_(std::move(hosts)), census_(census) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  leave_ns_ = NowNs();
  if (census_) {
    MPI_Irecv(&ping_buffer_, 1, MPI_INT, MPI_ANY_SOURCE, kPingTag, comm_, &ping_request_);
  }
  thread_ = std::thread([this] { Loop(); });
}

Watchdog::~Watchdog() { Stop(); }

void Watchdog::SetTimeout(double seconds) { timeout_s_.store(seconds > 0 ? seconds : 0.0); }

void Watchdog::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (census_) {
    MPI_Cancel(&ping_request_);
    MPI_Wait(&ping_request_, MPI_STATUS_IGNORE);
    for (MPI_Request& r : pending_sends_) MPI_Request_free(&r);
    pending_sends_.clear();
  }
  MPI_Comm_free(&comm_);
}

Watchdog::Scope::Scope(Watchdog* watchdog, const char* op, const char* group)
    : watchdog_(watchdog) {
  if (!watchdog_) return;
  watchdog_->op_ = op;
  watchdog_->group_ = group;
  watchdog_->seq_.fetch_add(1);
  watchdog_->enter_ns_ = NowNs();
}

Watchdog::Scope::~Scope() {
  if (!watchdog_) return;
  watchdog_->leave_ns_ = NowNs();
  watchdog_->enter_ns_ = 0;
}

Watchdog::Report Watchdog::CurrentReport() const {
  Report r;
  r.rank = rank_;
  const int64_t enter = enter_ns_.load();
  r.in_collective = enter != 0;
  r.seq = seq_.load();
  r.seconds = (NowNs() - (enter != 0 ? enter : leave_ns_.load())) * 1e-9;
  CopyName(r.op, sizeof(r.op), op_.load());
  CopyName(r.group, sizeof(r.group), group_.load());
  return r;
}

void Watchdog::AnswerPings() {
  for (;;) {
    int arrived = 0;
    MPI_Status status;
    MPI_Test(&ping_request_, &arrived, &status);
    if (!arrived) break;
    pending_payloads_.emplace_back(sizeof(Report));
    const Report report = CurrentReport();
    std::memcpy(pending_payloads_.back().data(), &report, sizeof(Report));
    pending_sends_.emplace_back();
    MPI_Isend(pending_payloads_.back().data(), sizeof(Report), MPI_BYTE, status.MPI_SOURCE,
              kPongTag, comm_, &pending_sends_.back());
    MPI_Irecv(&ping_buffer_, 1, MPI_INT, MPI_ANY_SOURCE, kPingTag, comm_, &ping_request_);
  }
  // Forget finished replies (payload i belongs to request i).
  for (size_t i = 0; i < pending_sends_.size();) {
    int done = 0;
    MPI_Test(&pending_sends_[i], &done, MPI_STATUS_IGNORE);
    if (done) {
      pending_sends_.erase(pending_sends_.begin() + static_cast<std::ptrdiff_t>(i));
      pending_payloads_.erase(pending_payloads_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
}

void Watchdog::AddProbe(WatchdogProbe* probe) {
  std::lock_guard<std::mutex> lock(probes_mu_);
  probes_.push_back(probe);
}

void Watchdog::RemoveProbe(WatchdogProbe* probe) {
  std::lock_guard<std::mutex> lock(probes_mu_);
  probes_.erase(std::remove(probes_.begin(), probes_.end(), probe), probes_.end());
}

void Watchdog::PollProbes(double timeout) {
  std::vector<WatchdogProbe*> probes;
  {
    std::lock_guard<std::mutex> lock(probes_mu_);
    probes = probes_;
  }
  for (WatchdogProbe* probe : probes) {
    const WatchdogProbe::Status s = probe->Poll();
    if (!s.error.empty()) {
      Fire("device collective failed: " + s.error +
           (s.op.empty() ? std::string() : " (oldest unfinished: " + s.op + " on group '" +
                                                s.group + "')") + ".\n");
    }
    if (timeout > 0 && !s.op.empty() && s.waited_s > timeout) {
      std::ostringstream what;
      what << "collective timeout: " << s.op << " on group '" << s.group
           << "' (device work) has not finished after " << s.waited_s
           << " s (parallel.collective_timeout_s = " << timeout << ").\n";
      Fire(what.str());
    }
  }
}

void Watchdog::Loop() {
  while (!stop_) {
    if (census_) AnswerPings();
    const double timeout = timeout_s_.load();
    const int64_t enter = enter_ns_.load();
    if (timeout > 0 && enter != 0) {
      const double waited = (NowNs() - enter) * 1e-9;
      if (waited > timeout) {
        const Report self = CurrentReport();
        std::ostringstream what;
        what << "collective timeout: " << self.op << " on group '" << self.group
             << "' (collective #" << self.seq << " of this rank) has not finished after " << waited
             << " s (parallel.collective_timeout_s = " << timeout << ").\n";
        Fire(what.str());
      }
    }
    PollProbes(timeout);
    std::this_thread::sleep_for(kPollInterval);
  }
}

void Watchdog::Fire(const std::string& what) {
  const Report self = CurrentReport();
  std::vector<Report> reports(static_cast<size_t>(size_));
  std::vector<bool> answered(static_cast<size_t>(size_), false);
  reports[rank_] = self;
  answered[rank_] = true;
  const double census_s = std::clamp(timeout_s_.load() / 4, 3.0, 10.0);
  if (census_) {
    // Ping everyone, keep answering others' pings, collect replies until
    // all answered or census_s passed.
    int ping = 1;
    std::vector<MPI_Request> sends(size_, MPI_REQUEST_NULL), recvs(size_, MPI_REQUEST_NULL);
    for (int p = 0; p < size_; ++p) {
      if (p == rank_) continue;
      MPI_Isend(&ping, 1, MPI_INT, p, kPingTag, comm_, &sends[p]);
      MPI_Irecv(&reports[p], sizeof(Report), MPI_BYTE, p, kPongTag, comm_, &recvs[p]);
    }
    const int64_t deadline = NowNs() + static_cast<int64_t>(census_s * 1e9);
    for (;;) {
      AnswerPings();
      bool all = true;
      for (int p = 0; p < size_; ++p) {
        if (answered[p]) continue;
        int done = 0;
        MPI_Test(&recvs[p], &done, MPI_STATUS_IGNORE);
        answered[p] = done != 0;
        all = all && answered[p];
      }
      if (all || NowNs() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  std::ostringstream msg;
  msg << "FATAL [rank " << rank_ << " on " << hosts_[rank_] << "] " << what;
  if (census_) {
    std::ostringstream lost;
    int num_lost = 0;
    for (int p = 0; p < size_; ++p) {
      if (answered[p]) continue;
      lost << (num_lost++ ? ", " : "") << "rank " << p << " on " << hosts_[p];
    }
    if (num_lost) {
      msg << "  lost rank(s), no answer within " << census_s
          << " s (dead, stopped, or network cut): " << lost.str() << "\n";
    } else {
      msg << "  every rank answered: a rank is slow (checkpoint, evaluation) or the ranks "
             "called different collectives\n";
    }
    int listed = 0;
    for (int p = 0; p < size_ && listed < 16; ++p) {
      if (!answered[p] || p == rank_) continue;
      const Report& r = reports[p];
      msg << "  rank " << p << " on " << hosts_[p] << ": "
          << (r.in_collective ? "in " : "last finished ") << r.op << " on '" << r.group
          << "' (#" << r.seq << ") " << (r.in_collective ? "for " : "") << r.seconds
          << (r.in_collective ? " s\n" : " s ago\n");
      ++listed;
    }
  } else {
    msg << "  (MPI gave no MPI_THREAD_MULTIPLE: lost ranks are not identified)\n";
  }
  std::vector<WatchdogProbe*> probes;
  {
    std::lock_guard<std::mutex> lock(probes_mu_);
    probes = probes_;
  }
  if (!probes.empty()) msg << "  aborting the device communicators.\n";
  msg << "  ending the job (MPI_Abort).\n";
  const std::string text = msg.str();
  std::fputs(text.c_str(), stderr);
  std::fflush(stderr);
  alarm(kAbortGraceSeconds);  // SIGALRM's default action ends the process
  for (WatchdogProbe* probe : probes) probe->Abort();
  MPI_Abort(MPI_COMM_WORLD, 3);
  _exit(3);
}

}  // namespace sb
