// Graceful preemption (docs/cli.md, "Preemption and signals"): while a
// StopSignals object lives, the first SIGTERM, SIGINT or SIGUSR1 (Slurm's
// usual warning signal, `#SBATCH --signal=USR1@120`) only records itself
// and prints one line; the training loop looks at step boundaries, every
// rank agrees through the collective AND (so all stop after the same step,
// whichever rank got the signal first), saves a checkpoint and exits with
// kExitPreempted. A second signal ends the process at once with the signal's
// default action (the exit status says which signal).
//
// The handler only stores to lock-free atomics and calls write(2), both
// async-signal-safe; SA_RESTART keeps interrupted system calls going.
#pragma once

namespace sb {

class StopSignals {
 public:
  // Installs the handlers (one StopSignals per process at a time). `announce`:
  // the handler writes a line to stderr on the first signal (rank 0 only,
  // so that a job prints it once).
  explicit StopSignals(bool announce);
  // Restores the handlers that were there before.
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The first signal received since construction (SIGTERM, SIGINT or
  // SIGUSR1), or 0.
  static int received();
  // The stop is complete (its checkpoint saved, or nothing to save): from now until the process ends (the
  // handlers stay installed past the destructor), any of the three signals
  // ends the process with _exit(exit_code). Under mpirun this matters: once
  // one rank exits non-zero, mpirun sends SIGTERM to the ranks still on
  // their way out, which must end with the same code, not die by signal.
  static void ExitOnNextSignal(int exit_code);
};

// "SIGTERM", "SIGINT", "SIGUSR1", else "signal N".
const char* StopSignalName(int signal);

}  // namespace sb
