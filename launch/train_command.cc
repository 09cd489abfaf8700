// switchboard train --config F [--set a.b=v]... [--run_dir D]
//                   [--resume | --resume_from step_N | --init_from DIR | --overwrite]
//                   [--skip_memory_check]
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
#include "absl/strings/str_replace.h"
#include "launch/commands.h"
#include "launch/flags.h"
#include "launch/init_from.h"
#include "launch/run_dir_lock.h"
#include "launch/trainer.h"
#include "parallel/backend.h"
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

// The command that continues this run: the same arguments with --resume
// (instead of --resume_from / --overwrite), shell-quoted where needed.
std::string ResumeCommand(const Args& args) {
  std::string out = "switchboard train";
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--resume" || a == "--overwrite" || a.rfind("--resume=", 0) == 0 ||
        a.rfind("--overwrite=", 0) == 0 || a.rfind("--resume_from=", 0) == 0) {
      continue;
    }
    if (a == "--resume_from") {
      ++i;  // and its value
      continue;
    }
    const bool plain = !a.empty() && a.find_first_not_of(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=,:+@%") ==
        std::string::npos;
    if (plain) {
      absl::StrAppend(&out, " ", a);
    } else {
      absl::StrAppend(&out, " '", absl::StrReplaceAll(a, {{"'", "'\\''"}}), "'");
    }
  }
  return out + " --resume";
}

}  // namespace

int TrainCommand(const Args& args) {
  const std::vector<FlagSpec> specs = {
      {"config", "TrainConfig text file (configs/*.textproto)", false, false, true},
      {"set", "override a field: --set moe.top_k=2 (repeatable)", false, true, false},
      {"run_dir", "output directory (default runs/<config name>)", false, false, false},
      {"resume", "continue from run_dir/checkpoints/latest (any data x expert layout)", true, false,
       false},
      {"resume_from", "continue from checkpoint step_N of run_dir instead of latest", false, false,
       false},
      {"overwrite", "start afresh in a run_dir whose metrics.jsonl an earlier run wrote", true,
       false, false},
      {"skip_memory_check", "start even when the memory estimate exceeds what is available", true,
       false, false},
      {"init_from", "start from the weights of DIR (checkpoint, upcycle output or HF directory; "
                    "fresh optimizer, step 0)", false, false, false},
      {"help", "print this help", true, false, false},
  };
  // Under mpirun / srun this starts MPI; a bare process is a world of one.
  auto runtime = Runtime::Start();
  if (!runtime.ok()) {
    std::fprintf(stderr, "switchboard train: %s\n", std::string(runtime.status().message()).c_str());
    return kExitFailure;
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
  // After a collective verdict that some rank failed. A rank's own error is
  // any but kAborted, which says "another rank failed (see its error)".
  // When rank 0 has its own, it alone prints (every rank most likely failed
  // alike: a bad flag, --set or config); otherwise each rank with its own
  // error prints it, and rank 0 its "another rank failed" (which may end
  // with the checkpoint to fall back to).
  auto error_agreed = [&](int code, const absl::Status& status) {
    const bool own = !status.ok() && status.code() != absl::StatusCode::kAborted;
    const bool chief_own = !rt.AllOk(!(rt.is_chief() && own));
    if (chief_own || (rt.is_chief() && !status.ok())) {
      return error_on_all(code, std::string(status.message()));
    }
    return own ? error_on_some(code, status) : code;
  };
  for (const std::string& a : args) {
    if (a == "--help") {
      if (rt.is_chief()) std::printf("%s", FlagsUsage("train", specs).c_str());
      return kExitOk;
    }
  }
  auto flags = Flags::Parse(args, specs);
  if (!flags.ok()) {
    return error_on_all(kExitUsage,
                        absl::StrCat(flags.status().message(), "\n\n", FlagsUsage("train", specs)));
  }

  // The config file may be missing on some nodes only: agree before going on.
  const std::string config_path = flags->Get("config");
  absl::StatusOr<TrainConfig> config = LoadConfigFile(config_path);
  if (config.ok()) {
    for (const std::string& assignment : flags->All("set")) {
      // The error starts with "--set <assignment>: " already.
      if (absl::Status s = ApplyOverride(assignment, &*config); !s.ok()) {
        config = s;
        break;
      }
    }
  }
  if (!rt.AllOk(config.ok())) return error_agreed(kExitUsage, config.status());
  rt.SetCollectiveTimeout(config->parallel().collective_timeout_s());

  // Rejected before any work when it does not fit the world size.
  if (absl::Status s = ValidateConfig(*config, rt.world_size()); !s.ok()) {
    return error_on_all(kExitUsage, absl::StrCat(s.message(), "\n(world size ", rt.world_size(),
                                                 ": the number of ranks started by mpirun / srun)"));
  }
  // Tensors move over MPI (host) or NCCL (device): parallel.backend, AUTO by train.device.
  static_assert(static_cast<int>(Backend::kAuto) == switchboard::ParallelConfig::AUTO &&
                    static_cast<int>(Backend::kMpi) == switchboard::ParallelConfig::MPI &&
                    static_cast<int>(Backend::kNccl) == switchboard::ParallelConfig::NCCL,
                "parallel::Backend mirrors ParallelConfig::Backend");
  const Backend backend = ResolveBackend(
      static_cast<Backend>(config->parallel().backend()),
      config->train().device() == switchboard::TrainLoopConfig::CUDA ? Device::kCuda
                                                                     : Device::kCpu);
  std::unique_ptr<Communicator> nccl_world;
  if (backend == Backend::kNccl) {
    // Every rank binds its GPU first, so that one without a GPU fails the
    // job cleanly instead of leaving the others in NCCL's bootstrap.
    absl::StatusOr<int> device = BindLocalDevice(rt);
    if (!rt.AllOk(device.ok())) return error_on_some(kExitUsage, device.status());
    auto world = CreateNcclWorld(rt, *device);
    if (!rt.AllOk(world.ok())) return error_on_some(kExitUsage, world.status());
    nccl_world = std::move(*world);
  }
  // parallel.all_to_all = HIERARCHICAL: nodes from the config or the launcher's placement.
  int ranks_per_node = 0;
  if (config->parallel().all_to_all() == switchboard::ParallelConfig::HIERARCHICAL) {
    ranks_per_node = config->parallel().ranks_per_node() > 0 ? config->parallel().ranks_per_node()
                                                             : BlockRanksPerNode(rt.hosts());
    if (ranks_per_node == 0) {
      return error_on_all(kExitUsage, "parallel.all_to_all = HIERARCHICAL: the ranks are not placed node "
                             "by node with the same count per node (mpirun --map-by ppr:N:node); "
                             "set parallel.ranks_per_node or use FLAT");
    }
  }
  auto grid = ProcessGrid::Create(nccl_world ? *nccl_world : rt.world(),
                                  config->parallel().expert_parallel_size(), ranks_per_node);
  if (!grid.ok()) return error_on_all(kExitUsage, std::string(grid.status().message()));

  if (flags->Has("run_dir") && flags->Get("run_dir").empty()) {
    return error_on_all(kExitUsage, "--run_dir is empty: give the directory this run writes to");
  }
  const std::string run_dir = flags->Get(
      "run_dir", absl::StrCat("runs/", std::filesystem::path(config_path).stem().string()));
  const bool resume_from = flags->Has("resume_from");
  const bool resume = flags->Has("resume") || resume_from;
  const bool overwrite = flags->Has("overwrite");
  if (flags->Has("resume") && resume_from) {
    return error_on_all(kExitUsage, "--resume and --resume_from exclude each other");
  }
  if (resume && overwrite) {
    return error_on_all(kExitUsage, "--overwrite starts afresh; it cannot go with --resume");
  }
  const bool init_from = flags->Has("init_from");
  if (resume && init_from) {
    return error_on_all(kExitUsage, "--init_from starts a new run from weights, --resume continues "
                                    "one: give one of them");
  }
  // Checked before anything is created (the lock makes the run directory),
  // and again by the trainer under the lock.
  std::string resume_dir;
  if (resume_from) {
    absl::StatusOr<std::string> dir = ResolveResumeFrom(run_dir, flags->Get("resume_from"));
    if (!dir.ok()) return error_on_all(kExitUsage, std::string(dir.status().message()));
    resume_dir = *dir;
  } else if (resume && !HasCheckpoint(run_dir)) {
    return error_on_all(kExitUsage,
                        absl::StrCat("--resume: ", LatestCheckpoint(run_dir).status().message()));
  }
  if (!resume) {
    if (absl::Status s = CheckFreshRunDir(run_dir, overwrite); !s.ok()) {
      return error_on_all(kExitUsage, std::string(s.message()));
    }
  }
  // One run per directory: rank 0 holds the lock until the process ends.
  std::unique_ptr<RunDirLock> lock;
  absl::Status locked;
  if (rt.is_chief()) {
    auto acquired = RunDirLock::Acquire(run_dir);
    if (acquired.ok()) lock = std::move(*acquired);
    locked = acquired.status();
  }
  if (!rt.AllOk(locked.ok())) return error_agreed(kExitUsage, locked);

  if (init_from && config->data().tokenizer_path().empty()) {
    // The weights' tokenizer must be the data's (checked by the data loader).
    const std::string tokenizer = InitFromTokenizer(flags->Get("init_from"));
    if (!tokenizer.empty()) config->mutable_data()->set_tokenizer_path(tokenizer);
  }
  TrainerContext context;
  context.grid = grid->get();
  context.dtype = DType::kF32;
  context.ranks_on_host = rt.info().local_size;
  context.check_host_memory = !flags->Has("skip_memory_check");
  auto trainer = Trainer::Create(*config, run_dir, context);
  if (!rt.AllOk(trainer.ok())) return error_agreed(kExitUsage, trainer.status());
  if (init_from) {
    // Every rank loads its expert shard; a bad directory fails every rank alike.
    std::string from;
    const absl::Status s =
        InitModelFrom(flags->Get("init_from"), *config, (*trainer)->model(), &from);
    if (!rt.AllOk(s.ok())) return error_agreed(kExitUsage, s);
    if (rt.is_chief()) {
      std::printf("init_from: %s (weights only; optimizer and step start fresh)\n", from.c_str());
    }
  }
  if (resume) {
    // Collective (every rank reads its shards); a bad file fails every rank alike.
    const absl::Status s = resume_from ? (*trainer)->ResumeFrom(resume_dir) : (*trainer)->Resume();
    if (!rt.AllOk(s.ok())) {
      const char* flag = resume_from ? "--resume_from: " : "--resume: ";
      return error_agreed(kExitUsage, absl::Status(s.code(), absl::StrCat(flag, s.message())));
    }
  }
  (*trainer)->set_overwrite_run_files(overwrite);
  if (rt.is_chief()) std::printf("run_dir: %s\n", run_dir.c_str());
  if (absl::Status s = (*trainer)->Run(); !s.ok()) {
    const int code = IsInputError(s) ? kExitUsage : kExitFailure;
    if (rt.world_size() == 1) return error_on_all(code, std::string(s.message()));
    // Every rank returned it: rank 0 prints, and so does another rank whose
    // own error caused it (the others say "another rank failed").
    if (IsErrorOnAllRanks(s)) {
      if (rt.is_chief()) return error_on_all(code, std::string(s.message()));
      return IsOwnCauseOnAllRanks(s) ? error_on_some(code, s) : code;
    }
    // Other ranks may be waiting in a collective: end the whole job.
    rt.Abort(absl::StrCat("switchboard train: ", s.message()), code);
  }
  if ((*trainer)->stopped_by_signal() != 0) {
    if (rt.is_chief()) {
      std::printf("to continue (under mpirun / srun: with the same launcher; any number of ranks "
                  "works):\n  %s\n",
                  ResumeCommand(args).c_str());
      std::fflush(stdout);
    }
    return kExitPreempted;
  }
  return kExitOk;
}

}  // namespace sb
