// Process bootstrap (runtime.h): MPI start-up or a world of one, host
// names, local rank, the fatal hook and the collective watchdog.
#include "parallel/runtime.h"

#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "moe/core/check.h"
#include "parallel/mpi_check.h"
#include "parallel/mpi_communicator.h"
#include "parallel/watchdog.h"

namespace sb {
namespace {

constexpr int kHostNameBytes = 64;
constexpr unsigned kAbortGraceSeconds = 20;
std::atomic<bool> g_started{false};

std::string HostName() {
  char host[kHostNameBytes] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "?";
  return host;
}

// Installed as sb::SetFatalHook: a failed check on one rank ends every rank.
void AbortJobHook() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) {
    alarm(kAbortGraceSeconds);  // in case MPI_Abort cannot reach mpirun
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
}

}  // namespace

bool LaunchedByMpiLauncher() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_PROCID"}) {
    if (std::getenv(var) != nullptr) return true;
  }
  return false;
}

int BlockRanksPerNode(const std::vector<std::string>& hosts) {
  const int n = static_cast<int>(hosts.size());
  if (n == 0) return 0;
  int per_node = 1;
  while (per_node < n && hosts[per_node] == hosts[0]) ++per_node;
  if (n % per_node != 0) return 0;
  for (int first = 0; first < n; first += per_node) {
    for (int r = first; r < first + per_node; ++r)
      if (hosts[r] != hosts[first]) return 0;
    // A host may appear in one block only.
    for (int other = 0; other < first; other += per_node)
      if (hosts[other] == hosts[first]) return 0;
  }
  return per_node;
}

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Start(const RuntimeOptions& options) {
  if (g_started.exchange(true)) {
    return absl::FailedPreconditionError("Runtime::Start called twice in one process");
  }
  auto rt = std::unique_ptr<Runtime>(new Runtime());
  rt->info_.host = HostName();
  if (!LaunchedByMpiLauncher()) {
    rt->hosts_ = {rt->info_.host};
    rt->world_ = std::make_unique<SelfCommunicator>("world");
    return rt;
  }
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
    return absl::UnavailableError(
        absl::StrCat("MPI_Init_thread failed on ", rt->info_.host,
                     " (launched by mpirun/srun: is the MPI library the one mpirun belongs to?)"));
  }
  rt->info_.mpi = true;
  SB_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  SB_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rt->info_.rank));
  SB_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &rt->info_.world_size));
  SetProcessRank(rt->info_.rank);
  SetFatalHook(&AbortJobHook);

  // Host names of all ranks (for messages), local rank from the shared-memory node split.
  std::vector<char> mine(kHostNameBytes, '\0');
  std::strncpy(mine.data(), rt->info_.host.c_str(), kHostNameBytes - 1);
  std::vector<char> all(static_cast<size_t>(kHostNameBytes) * rt->info_.world_size);
  SB_MPI_CHECK(MPI_Allgather(mine.data(), kHostNameBytes, MPI_CHAR, all.data(), kHostNameBytes,
                             MPI_CHAR, MPI_COMM_WORLD));
  for (int r = 0; r < rt->info_.world_size; ++r) {
    rt->hosts_.emplace_back(all.data() + static_cast<size_t>(r) * kHostNameBytes);
  }
  MPI_Comm node = MPI_COMM_NULL;
  SB_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rt->info_.rank,
                                   MPI_INFO_NULL, &node));
  SB_MPI_CHECK(MPI_Comm_rank(node, &rt->info_.local_rank));
  SB_MPI_CHECK(MPI_Comm_size(node, &rt->info_.local_size));
  SB_MPI_CHECK(MPI_Comm_free(&node));

  MPI_Comm census = MPI_COMM_NULL;
  SB_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &census));
  rt->watchdog_ = std::make_unique<Watchdog>(census, rt->hosts_, provided >= MPI_THREAD_MULTIPLE);
  rt->watchdog_->SetTimeout(options.collective_timeout_s);
  rt->world_ = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, "world", rt->watchdog_.get(),
                                                 /*owned=*/false);
  return rt;
}

Runtime::~Runtime() {
  world_.reset();
  if (!info_.mpi) return;
  if (watchdog_) watchdog_->Stop();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void Runtime::SetCollectiveTimeout(double seconds) {
  if (watchdog_) watchdog_->SetTimeout(seconds);
}

bool Runtime::AllOk(bool ok) {
  if (world_size() == 1) return ok;
  Tensor failures = Tensor::FromVector(std::vector<int32_t>{ok ? 0 : 1}, {1});
  world_->AllReduceSum(failures);
  return failures.data<int32_t>()[0] == 0;
}

void Runtime::Abort(const std::string& message, int exit_code) {
  std::fprintf(stderr, "FATAL [rank %d on %s] %s\n", info_.rank, info_.host.c_str(),
               message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  if (info_.mpi) {
    alarm(kAbortGraceSeconds);
    MPI_Abort(MPI_COMM_WORLD, exit_code);
  }
  std::exit(exit_code);
}

}  // namespace sb
