// Loader throughput: tokens per second that a BatchSource delivers to the
// trainer (one thread, as the trainer reads), for a prepared shard directory
// or a 1:1 mixture of two. Validates before timing: targets are inputs
// shifted by one, ids < vocab, and re-reading an index gives the same batch.
// Prints one JSON object. Driven by benchmarks/data_throughput.py.
//
// Usage: data_loader_bench DIR [MIX_DIR] [--batch B] [--seq S] [--seconds T]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "data/batch_source.h"
#include "data/mixture_source.h"
#include "data/shard_source.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "data_loader_bench: %s\n", message.c_str());
  return 1;
}

bool Validate(sb::BatchSource& source, int batch, int seq, std::string* why) {
  sb::Batch a, b;
  for (int64_t index : {0, 1, 17, 1000}) {
    if (!source.Read(index, batch, seq, &a).ok() || !source.Read(index, batch, seq, &b).ok()) {
      *why = "read failed";
      return false;
    }
    const int32_t* in = a.inputs.data<int32_t>();
    const int32_t* tg = a.targets.data<int32_t>();
    if (std::memcmp(in, b.inputs.data<int32_t>(), sizeof(int32_t) * batch * seq) != 0) {
      *why = "re-reading an index gave another batch";
      return false;
    }
    for (int r = 0; r < batch; ++r) {
      for (int t = 0; t < seq; ++t) {
        const int64_t i = int64_t{r} * seq + t;
        if (in[i] < 0 || in[i] >= source.vocab_size()) *why = "token outside the vocab";
        if (t + 1 < seq && tg[i] != in[i + 1]) *why = "targets are not inputs shifted by one";
        if (!why->empty()) return false;
      }
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> dirs;
  int batch = 8, seq = 256;
  double seconds = 2.0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--batch" && i + 1 < argc) {
      batch = std::atoi(argv[++i]);
    } else if (arg == "--seq" && i + 1 < argc) {
      seq = std::atoi(argv[++i]);
    } else if (arg == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else {
      dirs.push_back(arg);
    }
  }
  if (dirs.empty() || dirs.size() > 2 || batch <= 0 || seq <= 0) {
    return Fail("usage: data_loader_bench DIR [MIX_DIR] [--batch B] [--seq S] [--seconds T]");
  }
  std::vector<sb::MixtureComponent> components;
  for (const std::string& dir : dirs) {
    sb::ShardSourceOptions options;
    options.seed = 1234;
    auto source = sb::ShardSource::Open(dir, options);
    if (!source.ok()) return Fail(std::string(source.status().message()));
    components.push_back({std::move(*source), 1.0});
  }
  std::unique_ptr<sb::BatchSource> source;
  if (components.size() == 1) {
    source = std::move(components[0].source);
  } else {
    auto mix = sb::MixtureSource::Create(std::move(components), 1234);
    if (!mix.ok()) return Fail(std::string(mix.status().message()));
    source = std::move(*mix);
  }
  std::string why;
  if (!Validate(*source, batch, seq, &why)) return Fail("validation failed: " + why);

  sb::Batch out;
  int64_t batches = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (int k = 0; k < 64; ++k, ++batches) {
      if (!source->Read(batches, batch, seq, &out).ok()) return Fail("read failed");
    }
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  const double tokens_per_s = static_cast<double>(batches) * batch * seq / elapsed;
  std::printf("{\"source\": \"%s\", \"kind\": \"%s\", \"batch\": %d, \"seq\": %d, "
              "\"batches\": %lld, \"seconds\": %.3f, \"tokens_per_s\": %.0f}\n",
              source->Describe().c_str(), dirs.size() == 1 ? "shards" : "mixture", batch, seq,
              static_cast<long long>(batches), elapsed, tokens_per_s);
  return 0;
}
