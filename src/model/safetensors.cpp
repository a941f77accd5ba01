#include "model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

namespace ckv {
namespace {

using nlohmann::json;

// Larger headers are not produced by any real writer; refusing them bounds the JSON parse.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

Status Corrupt(const std::string& path, const std::string& what) {
  return Status::Corruption(path + ": " + what);
}

Status CorruptTensor(const std::string& path, const std::string& tensor, const std::string& what) {
  return Status::Corruption(path + ": tensor '" + tensor + "': " + what);
}

// Header integers are written without sign by every writer; nlohmann parses them as unsigned.
bool ReadUnsigned(const json& v, uint64_t* out) {
  if (!v.is_number_unsigned()) return false;
  *out = v.get<uint64_t>();
  return true;
}

struct ParsedEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin;
  uint64_t end;
};

Result<ParsedEntry> ParseEntry(const std::string& path, const std::string& name, const json& e,
                               uint64_t data_size) {
  if (!e.is_object()) return CorruptTensor(path, name, "header entry is not an object");
  auto dt = e.find("dtype");
  auto sh = e.find("shape");
  auto off = e.find("data_offsets");
  if (dt == e.end() || sh == e.end() || off == e.end()) {
    return CorruptTensor(path, name, "header entry needs dtype, shape and data_offsets");
  }
  if (!dt->is_string()) return CorruptTensor(path, name, "dtype is not a string");
  ParsedEntry p;
  p.name = name;
  const std::string dtype_name = dt->get<std::string>();
  std::optional<DType> dtype = ParseDType(dtype_name);
  if (!dtype) {
    return Status::Unsupported(path + ": tensor '" + name + "' has unsupported dtype '" +
                               dtype_name + "' (supported: F32, F16, BF16)");
  }
  p.dtype = *dtype;

  if (!sh->is_array()) return CorruptTensor(path, name, "shape is not an array");
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : *sh) {
    uint64_t dim;
    if (!ReadUnsigned(d, &dim)) {
      return CorruptTensor(path, name,
                           "shape " + sh->dump() + " has a negative or non-integer dim");
    }
    if (dim > static_cast<uint64_t>(INT64_MAX)) overflow = true;
    overflow |= __builtin_mul_overflow(numel, dim, &numel);
    p.shape.push_back(static_cast<int64_t>(dim));
  }
  uint64_t nbytes = 0;
  overflow |= __builtin_mul_overflow(numel, DTypeSize(p.dtype), &nbytes);
  if (overflow || nbytes > static_cast<uint64_t>(INT64_MAX)) {
    return CorruptTensor(path, name, "shape " + sh->dump() + " overflows");
  }

  if (!off->is_array() || off->size() != 2 || !ReadUnsigned((*off)[0], &p.begin) ||
      !ReadUnsigned((*off)[1], &p.end)) {
    return CorruptTensor(path, name,
                         "data_offsets must be two non-negative integers, got " + off->dump());
  }
  if (p.end < p.begin) {
    return CorruptTensor(path, name, "data_offsets " + off->dump() + " end before begin");
  }
  if (p.end > data_size) {
    return CorruptTensor(path, name,
                         "data_offsets " + off->dump() + " beyond the data buffer of " +
                             std::to_string(data_size) + " bytes");
  }
  if (p.end - p.begin != nbytes) {
    return CorruptTensor(path, name,
                         "data_offsets " + off->dump() + " span " +
                             std::to_string(p.end - p.begin) + " bytes but shape " + sh->dump() +
                             " x " + dtype_name + " needs " + std::to_string(nbytes));
  }
  return p;
}

Result<json> ParseJson(const std::string& path, const unsigned char* begin, size_t size,
                       std::string* duplicate_key) {
  // nlohmann keeps the last of duplicate keys silently; a duplicated tensor name is corruption.
  std::set<std::string> keys;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && parsed.is_string() &&
        !keys.insert(parsed.get<std::string>()).second && duplicate_key->empty()) {
      *duplicate_key = parsed.get<std::string>();
    }
    return true;
  };
  try {
    return json::parse(begin, begin + size, callback);
  } catch (const json::exception& e) {
    return Corrupt(path, std::string("header is not valid JSON: ") + e.what());
  }
}

bool IsSafeShardName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && name.find('\0') == std::string::npos &&
         name.find("..") == std::string::npos;
}

bool FileExists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

}  // namespace

std::string ShapeToString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Status SafetensorsSet::AddFile(const std::string& path, MmapFile::Mode mode) {
  CKV_ASSIGN_OR_RETURN(std::shared_ptr<MmapFile> file, MmapFile::Open(path, mode));
  const unsigned char* base = file->data();
  const size_t size = file->size();
  if (size < 8) {
    return Corrupt(path, "too short for a safetensors header (" + std::to_string(size) + " bytes)");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  if (header_len > kMaxHeaderBytes) {
    return Corrupt(path, "header length " + std::to_string(header_len) + " is absurd (limit " +
                             std::to_string(kMaxHeaderBytes) + ")");
  }
  if (header_len > size - 8) {
    return Corrupt(path, "header length " + std::to_string(header_len) + " exceeds the file size " +
                             std::to_string(size));
  }
  std::string duplicate;
  CKV_ASSIGN_OR_RETURN(json header, ParseJson(path, base + 8, header_len, &duplicate));
  if (!header.is_object()) return Corrupt(path, "header is not a JSON object");
  if (!duplicate.empty()) return CorruptTensor(path, duplicate, "appears twice in the header");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  std::vector<ParsedEntry> entries;
  for (const auto& [name, e] : header.items()) {
    if (name == "__metadata__") {
      if (!e.is_object()) return Corrupt(path, "__metadata__ is not an object");
      continue;
    }
    CKV_ASSIGN_OR_RETURN(ParsedEntry p, ParseEntry(path, name, e, data_size));
    entries.push_back(std::move(p));
  }

  std::vector<const ParsedEntry*> by_offset;
  for (const ParsedEntry& p : entries) {
    if (p.end > p.begin) by_offset.push_back(&p);  // empty tensors cannot overlap anything
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const ParsedEntry* a, const ParsedEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < by_offset[i - 1]->end) {
      return CorruptTensor(path, by_offset[i]->name,
                           "data_offsets overlap tensor '" + by_offset[i - 1]->name + "'");
    }
  }

  for (ParsedEntry& p : entries) {
    if (tensors_.count(p.name) != 0) {
      return CorruptTensor(path, p.name, "also present in " + tensors_.at(p.name).file);
    }
    TensorView v;
    v.name = p.name;
    v.dtype = p.dtype;
    v.shape = std::move(p.shape);
    v.nbytes = p.end - p.begin;
    v.file = path;
    const unsigned char* src = base + data_start + p.begin;
    // The mapping is page-aligned, so the stored offset decides element alignment.
    if (v.nbytes == 0 || (data_start + p.begin) % DTypeSize(p.dtype) == 0) {
      v.data = src;
    } else {
      std::vector<uint64_t>& copy = aligned_copies_.emplace_back((v.nbytes + 7) / 8);
      std::memcpy(copy.data(), src, v.nbytes);
      v.data = copy.data();
    }
    tensors_.emplace(v.name, std::move(v));
  }
  files_.push_back(std::move(file));
  return Status::OK();
}

Result<SafetensorsSet> SafetensorsSet::OpenFile(const std::string& path, MmapFile::Mode mode) {
  SafetensorsSet set;
  set.dir_ = std::filesystem::path(path).parent_path().string();
  CKV_RETURN_IF_ERROR(set.AddFile(path, mode));
  return set;
}

Result<SafetensorsSet> SafetensorsSet::Open(const std::string& dir, MmapFile::Mode mode) {
  const std::string index_path = dir + "/" + kIndexName;
  if (!FileExists(index_path)) {
    if (!FileExists(dir + "/" + kSingleName)) {
      return Status::NotFound("neither " + std::string(kSingleName) + " nor " + kIndexName +
                              " found in model dir " + dir);
    }
    CKV_ASSIGN_OR_RETURN(SafetensorsSet set, OpenFile(dir + "/" + kSingleName, mode));
    set.dir_ = dir;
    return set;
  }

  CKV_ASSIGN_OR_RETURN(std::shared_ptr<MmapFile> index_file, MmapFile::Open(index_path));
  std::string unused_duplicate;
  CKV_ASSIGN_OR_RETURN(
      json index, ParseJson(index_path, index_file->data(), index_file->size(), &unused_duplicate));
  auto wm = index.is_object() ? index.find("weight_map") : index.end();
  if (wm == index.end() || !wm->is_object()) {
    return Corrupt(index_path, "needs an object field 'weight_map'");
  }
  std::map<std::string, std::string> tensor_to_shard;
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : wm->items()) {
    if (!shard.is_string()) {
      return CorruptTensor(index_path, tensor, "weight_map value is not a file name");
    }
    const std::string name = shard.get<std::string>();
    if (!IsSafeShardName(name)) {
      return CorruptTensor(index_path, tensor,
                           "shard file name '" + name + "' is not a plain file name in " + dir);
    }
    tensor_to_shard[tensor] = name;
    shards.insert(name);
  }

  SafetensorsSet set;
  set.dir_ = dir;
  for (const std::string& shard : shards) {
    CKV_RETURN_IF_ERROR(set.AddFile(dir + "/" + shard, mode));
  }
  for (const auto& [tensor, shard] : tensor_to_shard) {
    const std::string shard_path = dir + "/" + shard;
    const TensorView* t = set.Find(tensor);
    if (t == nullptr || t->file != shard_path) {
      return CorruptTensor(index_path, tensor,
                           "weight_map names " + shard + " but that file does not contain it");
    }
  }
  return set;
}

const TensorView* SafetensorsSet::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Result<const TensorView*> SafetensorsSet::Require(const std::string& name,
                                                  const std::vector<int64_t>& shape) const {
  const TensorView* t = Find(name);
  if (t == nullptr) return Status::NotFound("tensor " + name + " missing (model dir " + dir_ + ")");
  if (t->shape != shape) {
    return Status::InvalidArgument("tensor " + name + " in " + t->file + " has shape " +
                                   ShapeToString(t->shape) + ", expected " + ShapeToString(shape));
  }
  return t;
}

}  // namespace ckv
