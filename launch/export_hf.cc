#include "launch/export_hf.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "data/staged_dir.h"
#include "data/tokenizer.h"
#include "launch/hf_convert.h"
#include "moe/io/model_weights.h"
#include "nlohmann/json.hpp"

namespace sb {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

absl::Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

}  // namespace

absl::Status ExportHf(Model& model, const TrainConfig& config, const std::string& tokenizer_path,
                      const ExportHfOptions& options) {
  std::optional<SafetensorsDType> storage;
  if (options.dtype == "float32") {
    storage = SafetensorsDType::kF32;
  } else if (options.dtype == "bfloat16") {
    storage = SafetensorsDType::kBF16;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--dtype must be float32 or bfloat16, not '", options.dtype, "'"));
  }
  absl::StatusOr<HfConfig> hf = HfConfigFromTrainConfig(config, options.dtype);
  if (!hf.ok()) return hf.status();
  std::unique_ptr<Tokenizer> tokenizer;
  if (!tokenizer_path.empty()) {
    std::string error;
    tokenizer = Tokenizer::Load(tokenizer_path, &error);
    if (!tokenizer) return absl::InvalidArgumentError(absl::StrCat(tokenizer_path, ": ", error));
    if (tokenizer->vocab_size() > config.model().vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          tokenizer_path, ": ", tokenizer->vocab_size(), " pieces, more than model.vocab_size = ",
          config.model().vocab_size()));
    }
    hf->bos_token_id = tokenizer->bos_id();
    hf->eos_token_id = tokenizer->eos_id();
  }
  auto staged = StagedDir::Create(options.out, options.overwrite);
  if (!staged.ok()) return staged.status();
  const fs::path dir(staged->path());
  if (absl::Status s = WriteText(dir / "config.json", HfConfigJson(*hf)); !s.ok()) return s;
  json generation = {{"_from_model_config", true}};
  if (hf->bos_token_id >= 0) generation["bos_token_id"] = hf->bos_token_id;
  if (hf->eos_token_id >= 0) generation["eos_token_id"] = hf->eos_token_id;
  if (absl::Status s = WriteText(dir / "generation_config.json", generation.dump(2) + "\n"); !s.ok())
    return s;
  auto files = WriteShardedSafetensors(dir.string(), NamedModelWeights(model), storage,
                                       options.max_shard_bytes, {{"exported_by", "switchboard"}});
  if (!files.ok()) return files.status();
  if (tokenizer) {
    std::error_code ec;
    fs::copy_file(tokenizer_path, dir / "tokenizer.model", ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot copy ", tokenizer_path, ": ", ec.message()));
    // What transformers' LlamaTokenizer needs besides the model file.
    json tc = {{"tokenizer_class", "LlamaTokenizer"},
               {"add_bos_token", options.add_bos_token},
               {"add_eos_token", false},
               {"model_max_length", config.model().max_seq_len()}};
    if (tokenizer->bos_id() >= 0) tc["bos_token"] = tokenizer->IdToPiece(tokenizer->bos_id());
    if (tokenizer->eos_id() >= 0) tc["eos_token"] = tokenizer->IdToPiece(tokenizer->eos_id());
    if (tokenizer->unk_id() >= 0) tc["unk_token"] = tokenizer->IdToPiece(tokenizer->unk_id());
    if (absl::Status s = WriteText(dir / "tokenizer_config.json", tc.dump(2) + "\n"); !s.ok()) return s;
  }
  return staged->Commit();
}

}  // namespace sb
