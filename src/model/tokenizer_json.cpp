#include "model/tokenizer_json.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ckv::tokenizer {
namespace {

Result<std::string> ReadWholeFile(const std::string& path) {
  std::error_code ec;
  // A directory opens fine as a stream and only fails on reading, with a vaguer message.
  if (std::filesystem::is_directory(path, ec)) return Status::IOError(path + ": is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::IOError(path + ": cannot open: " + std::strerror(err));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IOError(path + ": read failed");
  return std::move(ss).str();
}

bool IsGzip(std::string_view data) {
  return data.size() >= 2 && static_cast<unsigned char>(data[0]) == 0x1F &&
         static_cast<unsigned char>(data[1]) == 0x8B;
}

Result<std::string> Gunzip(std::string_view data, const std::string& path) {
  z_stream zs{};
  // 16 + MAX_WBITS: expect a gzip header (not raw zlib).
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    return Status::Internal(path + ": inflateInit2 failed");
  }
  std::string out;
  out.resize(data.size() * 4 + 1024);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (zs.total_out == out.size()) out.resize(out.size() * 2);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + zs.total_out);
    zs.avail_out = static_cast<uInt>(out.size() - zs.total_out);
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      const std::string msg = zs.msg != nullptr ? zs.msg : "error " + std::to_string(rc);
      inflateEnd(&zs);
      return Status::Corruption(path + ": invalid gzip data: " + msg);
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      inflateEnd(&zs);
      return Status::Corruption(path + ": truncated gzip data");
    }
  }
  out.resize(zs.total_out);
  inflateEnd(&zs);
  return out;
}

}  // namespace

Result<Json> ReadJsonFile(const std::string& path) {
  CKV_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(path));
  if (IsGzip(data)) {
    CKV_ASSIGN_OR_RETURN(data, Gunzip(data, path));
  }
  try {
    return Json::parse(data);
  } catch (const Json::exception& e) {
    return Status::Corruption(path + ": invalid JSON: " + e.what());
  }
}

JsonContext JsonContext::Child(std::string_view key) const {
  return JsonContext{file, field.empty() ? std::string(key) : field + "." + std::string(key)};
}

JsonContext JsonContext::Index(size_t i) const {
  return JsonContext{file, field + "[" + std::to_string(i) + "]"};
}

Status JsonContext::Invalid(std::string_view what) const {
  return Status::InvalidArgument(file + ": " + (field.empty() ? "document" : field) + " " +
                                 std::string(what));
}

Status JsonContext::Unsupported(std::string_view value) const {
  return Status::Unsupported(file + ": " + field + " \"" + std::string(value) +
                             "\" is not supported");
}

Status ExpectObject(const Json& value, const JsonContext& ctx) {
  return value.is_object() ? Status::OK() : ctx.Invalid("must be an object");
}

Status ExpectArray(const Json& value, const JsonContext& ctx) {
  return value.is_array() ? Status::OK() : ctx.Invalid("must be an array");
}

const Json* OptionalMember(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

Result<const Json*> RequiredMember(const Json& obj, std::string_view key, const JsonContext& ctx) {
  CKV_RETURN_IF_ERROR(ExpectObject(obj, ctx));
  const Json* member = OptionalMember(obj, key);
  if (member == nullptr) return ctx.Child(key).Invalid("is missing");
  return member;
}

Result<std::string> RequiredString(const Json& obj, std::string_view key, const JsonContext& ctx) {
  CKV_ASSIGN_OR_RETURN(const Json* member, RequiredMember(obj, key, ctx));
  if (!member->is_string()) return ctx.Child(key).Invalid("must be a string");
  return member->get<std::string>();
}

Result<std::optional<std::string>> OptionalString(const Json& obj, std::string_view key,
                                                  const JsonContext& ctx) {
  const Json* member = OptionalMember(obj, key);
  if (member == nullptr) return std::optional<std::string>();
  if (!member->is_string()) return ctx.Child(key).Invalid("must be a string");
  return std::optional<std::string>(member->get<std::string>());
}

Result<bool> OptionalBool(const Json& obj, std::string_view key, bool default_value,
                          const JsonContext& ctx) {
  const Json* member = OptionalMember(obj, key);
  if (member == nullptr) return default_value;
  if (!member->is_boolean()) return ctx.Child(key).Invalid("must be a boolean");
  return member->get<bool>();
}

Result<int64_t> RequiredInt(const Json& obj, std::string_view key, const JsonContext& ctx) {
  CKV_ASSIGN_OR_RETURN(const Json* member, RequiredMember(obj, key, ctx));
  if (!member->is_number_integer()) return ctx.Child(key).Invalid("must be an integer");
  return member->get<int64_t>();
}

}  // namespace ckv::tokenizer
