#include "cli_common.h"

#include <iostream>
#include <sstream>

namespace ckv::cli {

std::string DefaultModelDir() {
  return std::string(CKV_SOURCE_DIR) + "/models/stories260k";
}

int Fail(const Status& status) {
  std::cerr << "error: " << status.ToString() << "\n";
  return 1;
}

Result<std::unique_ptr<Model>> LoadModel(const std::string& dir, bool pack_weights) {
  ModelOptions opts;
  opts.pack_weights = pack_weights;
  opts.require_tokenizer = false;
  return Model::Load(dir, opts);
}

KVPrecision ResolveKV(const std::string& name, const Model& model) {
  if (name == "bf16") return KVPrecision::kBF16;
  if (name == "f32") return KVPrecision::kF32;
  return model.DefaultKVPrecision();
}

Result<std::vector<int32_t>> ParseIdList(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto b = item.find_first_not_of(" \t");
    const auto e = item.find_last_not_of(" \t");
    if (b == std::string::npos)
      return Status::InvalidArgument("--ids: empty item in \"" + text + "\"");
    item = item.substr(b, e - b + 1);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < INT32_MIN || v > INT32_MAX) {
      return Status::InvalidArgument("--ids: \"" + item + "\" is not an integer token id");
    }
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

}  // namespace ckv::cli
