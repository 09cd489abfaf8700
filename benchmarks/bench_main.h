// Shared by the benchmark drivers: wall time, medians, the config a
// benchmark runs (file + forced overrides + --set, validated for one rank)
// and main()'s flag parsing and error reporting.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "configs/config.h"
#include "launch/flags.h"

namespace sb::bench {

inline double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// --config (or default_path), then `forced` overrides, then every --set.
inline absl::StatusOr<TrainConfig> LoadConfig(const Flags& flags, const std::string& default_path,
                                              const std::vector<std::string>& forced = {}) {
  auto config = LoadConfigFile(flags.Get("config", default_path));
  if (!config.ok()) return config.status();
  std::vector<std::string> all = forced;
  for (const std::string& s : flags.All("set")) all.push_back(s);
  for (const std::string& assignment : all) {
    if (absl::Status s = ApplyOverride(assignment, &*config); !s.ok()) return s;
  }
  if (absl::Status s = ValidateConfig(*config, /*world_size=*/1); !s.ok()) return s;
  return config;
}

// Parses the flags and runs `run`: exit 2 on bad flags, 1 on a failed run.
template <typename Run>
int Main(int argc, char** argv, const char* name, const std::vector<FlagSpec>& specs, Run run) {
  auto flags = Flags::Parse(std::vector<std::string>(argv + 1, argv + argc), specs);
  if (!flags.ok()) {
    std::fprintf(stderr, "%s: %s\n\n%s", name, std::string(flags.status().message()).c_str(),
                 FlagsUsage(name, specs).c_str());
    return 2;
  }
  if (absl::Status s = run(*flags); !s.ok()) {
    std::fprintf(stderr, "%s: %s\n", name, std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace sb::bench
