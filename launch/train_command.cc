// switchboard train --config F [--set a.b=v]... [--run_dir D] [--resume | --init_from DIR]
// The same command runs on every rank under mpirun / srun (docs/parallel.md).
#include <cblas.h>  // OpenBLAS (BLA_VENDOR in CMakeLists.txt): openblas_set_num_threads
#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "launch/commands.h"
#include "launch/flags.h"
#include "launch/init_from.h"
#include "launch/trainer.h"
#include "parallel/runtime.h"

namespace sb {
namespace {

// With several ranks on a node and no thread count chosen, each rank would
// start one OpenMP and one OpenBLAS thread per core: ranks x cores threads
// that thrash. Default to the cores this rank is bound to or, unbound, to
// the node's cores shared by its ranks. OMP_NUM_THREADS /
// OPENBLAS_NUM_THREADS, when set, win.
void DefaultThreadsPerRank(const ProcessInfo& info) {
  if (info.local_size <= 1) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  const int all = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int mine = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : all;
  const int threads = mine < all ? mine : std::max(1, all / info.local_size);
  if (!std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(threads);
  if (!std::getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(threads);
}

}  // namespace

int TrainCommand(const Args& args) {
  const std::vector<FlagSpec> specs = {
      {"config", "TrainConfig text file (configs/*.textproto)", false, false, true},
      {"set", "override a field: --set moe.top_k=2 (repeatable)", false, true, false},
      {"run_dir", "output directory (default runs/<config name>)", false, false, false},
      {"resume", "continue from run_dir/checkpoints/latest (any data x expert layout)", true, false,
       false},
      {"init_from", "start from the weights of DIR (checkpoint, upcycle output or HF directory; "
                    "fresh optimizer, step 0)", false, false, false},
      {"help", "print this help", true, false, false},
  };
  // Under mpirun / srun this starts MPI; a bare process is a world of one.
  auto runtime = Runtime::Start();
  if (!runtime.ok()) {
    std::fprintf(stderr, "switchboard train: %s\n", std::string(runtime.status().message()).c_str());
    return 1;
  }
  Runtime& rt = **runtime;
  DefaultThreadsPerRank(rt.info());
  // Errors every rank sees alike (flags, config) are printed by rank 0 only;
  // errors of some ranks only are printed by those ranks, with rank and host.
  auto error_on_all = [&](int code, const std::string& message) {
    if (rt.is_chief()) std::fprintf(stderr, "switchboard train: %s\n", message.c_str());
    return code;
  };
  auto error_on_some = [&](int code, const absl::Status& status) {
    if (!status.ok()) {
      std::fprintf(stderr, "switchboard train [rank %d on %s]: %s\n", rt.rank(),
                   rt.info().host.c_str(), std::string(status.message()).c_str());
    }
    return code;
  };
  for (const std::string& a : args) {
    if (a == "--help") {
      if (rt.is_chief()) std::printf("%s", FlagsUsage("train", specs).c_str());
      return 0;
    }
  }
  auto flags = Flags::Parse(args, specs);
  if (!flags.ok()) {
    return error_on_all(2, absl::StrCat(flags.status().message(), "\n\n", FlagsUsage("train", specs)));
  }

  // The config file may be missing on some nodes only: agree before going on.
  const std::string config_path = flags->Get("config");
  absl::StatusOr<TrainConfig> config = LoadConfigFile(config_path);
  if (config.ok()) {
    for (const std::string& assignment : flags->All("set")) {
      if (absl::Status s = ApplyOverride(assignment, &*config); !s.ok()) {
        config = absl::InvalidArgumentError(absl::StrCat("--set ", assignment, ": ", s.message()));
        break;
      }
    }
  }
  if (!rt.AllOk(config.ok())) return error_on_some(2, config.status());
  rt.SetCollectiveTimeout(config->parallel().collective_timeout_s());

  // Rejected before any work when it does not fit the world size.
  if (absl::Status s = ValidateConfig(*config, rt.world_size()); !s.ok()) {
    return error_on_all(2, absl::StrCat(s.message(), "\n(world size ", rt.world_size(),
                                        ": the number of ranks started by mpirun / srun)"));
  }
  auto grid = ProcessGrid::Create(rt.world(), config->parallel().expert_parallel_size());
  if (!grid.ok()) return error_on_all(2, std::string(grid.status().message()));

  const std::string run_dir = flags->Get(
      "run_dir", absl::StrCat("runs/", std::filesystem::path(config_path).stem().string()));
  // Checked before Create, which makes the run directory.
  const bool resume = flags->Has("resume");
  if (resume && flags->Has("init_from")) {
    return error_on_all(2, "--init_from starts a new run from weights, --resume continues one: "
                           "give one of them");
  }
  if (resume && !HasCheckpoint(run_dir)) {
    return error_on_all(2, absl::StrCat("--resume: ", LatestCheckpoint(run_dir).status().message()));
  }
  if (!resume && HasCheckpoint(run_dir)) {
    return error_on_all(2, absl::StrCat(CheckpointsDir(run_dir),
                                        "/latest exists: pass --resume to continue that run, or "
                                        "choose another --run_dir"));
  }
  if (flags->Has("init_from") && config->data().tokenizer_path().empty()) {
    // The weights' tokenizer must be the data's (checked by the data loader).
    const std::string tokenizer = InitFromTokenizer(flags->Get("init_from"));
    if (!tokenizer.empty()) config->mutable_data()->set_tokenizer_path(tokenizer);
  }
  auto trainer = Trainer::Create(*config, run_dir, {grid->get(), DType::kF32});
  if (!rt.AllOk(trainer.ok())) return error_on_some(2, trainer.status());
  if (flags->Has("init_from")) {
    // Every rank loads its expert shard; a bad directory fails every rank alike.
    std::string from;
    const absl::Status s = InitModelFrom(flags->Get("init_from"), *config, (*trainer)->model(), &from);
    if (!rt.AllOk(s.ok())) return error_on_some(2, s);
    if (rt.is_chief()) std::printf("init_from: %s (weights only; optimizer and step start fresh)\n", from.c_str());
  }
  if (resume) {
    // Collective (every rank reads its shards); a bad file fails every rank alike.
    const absl::Status s = (*trainer)->Resume();
    if (!rt.AllOk(s.ok())) {
      return error_on_some(2, absl::Status(s.code(), absl::StrCat("--resume: ", s.message())));
    }
  }
  if (rt.is_chief()) std::printf("run_dir: %s\n", run_dir.c_str());
  if (absl::Status s = (*trainer)->Run(); !s.ok()) {
    if (rt.world_size() == 1 || IsErrorOnAllRanks(s)) return error_on_all(1, std::string(s.message()));
    // Other ranks may be waiting in a collective: end the whole job.
    rt.Abort(absl::StrCat("switchboard train: ", s.message()), 1);
  }
  return 0;
}

}  // namespace sb
