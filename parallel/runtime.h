// Process bootstrap: how this process joined the job (DESIGN.md,
// "Parallelism"). Under mpirun / srun it starts MPI (MPI_Init_thread) and
// learns rank, world size, local rank and host; a process that no launcher
// started runs as a world of one WITHOUT calling MPI_Init, because OpenMPI's
// singleton init forks an `orted` helper that GPU boxes without OpenMPI lack.
//
// Failure policy: one failing rank ends the whole job. Start installs a fatal
// hook so that a failed SB_CHECK on any rank calls MPI_Abort after printing
// rank and host; Abort does the same for runtime errors (absl::Status); the
// collective watchdog (watchdog.h) ends a job whose collectives stop
// progressing. One Runtime per process.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"

namespace sb {

class Watchdog;

struct ProcessInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;  // rank among the processes on this host (GPU index)
  int local_size = 1;
  std::string host;
  bool mpi = false;    // MPI was initialised (launched by mpirun / srun)
};

struct RuntimeOptions {
  // Collective watchdog timeout until SetCollectiveTimeout (0: none).
  double collective_timeout_s = 300;
};

// True when mpirun or srun started this process: one of
// OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK, SLURM_PROCID is set.
bool LaunchedByMpiLauncher();

// Ranks per node when ranks are placed node by node with the same count on
// every node (hosts[r] constant on blocks of G consecutive ranks, G the
// same everywhere; mpirun --map-by ppr:G:node, srun --distribution=block);
// 0 otherwise (round-robin placement, uneven nodes).
int BlockRanksPerNode(const std::vector<std::string>& hosts);

class Runtime {
 public:
  static absl::StatusOr<std::unique_ptr<Runtime>> Start(const RuntimeOptions& options = {});
  // Stops the watchdog and calls MPI_Finalize.
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const ProcessInfo& info() const { return info_; }
  int rank() const { return info_.rank; }
  int world_size() const { return info_.world_size; }
  bool is_chief() const { return info_.rank == 0; }
  // Host name of every rank (index = rank).
  const std::vector<std::string>& hosts() const { return hosts_; }
  // MPI_COMM_WORLD (or a group of one without MPI).
  Communicator& world() { return *world_; }

  void SetCollectiveTimeout(double seconds);
  // The collective watchdog (null in a world of one): device communicators
  // register their probes with it.
  Watchdog* watchdog() { return watchdog_.get(); }
  // True on every rank iff `ok` is true on every rank (collective). Lets an
  // error found on some ranks only (a file missing on one node) end every
  // rank cleanly instead of leaving the others waiting in a collective.
  bool AllOk(bool ok);
  // Prints "FATAL [rank r on host] message" and ends the whole job with
  // `exit_code` (MPI_Abort; plain exit in a world of one).
  [[noreturn]] void Abort(const std::string& message, int exit_code);

 private:
  Runtime() = default;
  ProcessInfo info_;
  std::vector<std::string> hosts_;
  std::unique_ptr<Watchdog> watchdog_;
  std::unique_ptr<Communicator> world_;
};

}  // namespace sb
