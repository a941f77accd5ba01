#include "chat/jinja_json.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "chat/jinja_text.h"

namespace ckv::jinja {
namespace {

Result<Value> Convert(const nlohmann::ordered_json& json, int depth) {
  if (depth > kMaxValueDepth) {
    return Status::InvalidArgument("JSON input nested deeper than " +
                                   std::to_string(kMaxValueDepth) + " levels");
  }
  using Type = nlohmann::ordered_json::value_t;
  switch (json.type()) {
    case Type::null:
      return Value::None();
    case Type::boolean:
      return Value::Bool(json.get<bool>());
    case Type::number_integer:
      return Value::Int(json.get<int64_t>());
    case Type::number_unsigned: {
      const auto u = json.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Value::Float(static_cast<double>(u));
      }
      return Value::Int(static_cast<int64_t>(u));
    }
    case Type::number_float:
      return Value::Float(json.get<double>());
    case Type::string:
      return Value::String(json.get<std::string>());
    case Type::array: {
      ValueList items;
      items.reserve(json.size());
      for (const auto& item : json) {
        CKV_ASSIGN_OR_RETURN(Value v, Convert(item, depth + 1));
        items.push_back(std::move(v));
      }
      return Value::List(std::move(items));
    }
    case Type::object: {
      Dict dict;
      for (const auto& [key, item] : json.items()) {
        CKV_ASSIGN_OR_RETURN(Value v, Convert(item, depth + 1));
        dict.Set(Value::String(key), std::move(v));
      }
      return Value::FromDict(std::move(dict));
    }
    default:
      return Status::InvalidArgument("JSON input holds a value of unsupported type '" +
                                     std::string(json.type_name()) + "'");
  }
}

class JsonWriter {
 public:
  explicit JsonWriter(const JsonDumpOptions& options) : options_(options) {}

  Status Write(const Value& v, int level) {
    if (level > kMaxValueDepth) return Status::OutOfRange("tojson: value nested too deeply");
    switch (v.kind()) {
      case Value::Kind::kNone:
        out_ += "null";
        return Status::OK();
      case Value::Kind::kBool:
        out_ += v.bool_value() ? "true" : "false";
        return Status::OK();
      case Value::Kind::kInt:
        out_ += std::to_string(v.int_value());
        return Status::OK();
      case Value::Kind::kFloat:
        out_ += FloatText(v.number_value());
        return Status::OK();
      case Value::Kind::kString:
        WriteString(v.str());
        return Status::OK();
      case Value::Kind::kList:
      case Value::Kind::kTuple:
        return WriteList(v.items(), level);
      case Value::Kind::kDict:
        return WriteDict(v.dict(), level);
      case Value::Kind::kUndefined:
      case Value::Kind::kNamespace:
      case Value::Kind::kCallable:
        break;
    }
    return TypeError("Object of type " + TypeName(v) + " is not JSON serializable");
  }

  std::string Take() { return std::move(out_); }

 private:
  static std::string FloatText(double d) {
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
    return PyFloatRepr(d);
  }

  // Python's newline_indent for a nesting level, or nothing without indent.
  std::string NewlineIndent(int level) const {
    std::string s = "\n";
    for (int i = 0; i < level; ++i) s += *options_.indent;
    return s;
  }

  Status WriteList(const ValueList& items, int level) {
    if (items.empty()) {
      out_ += "[]";
      return Status::OK();
    }
    out_.push_back('[');
    const std::string inner = options_.indent ? NewlineIndent(level + 1) : std::string();
    out_ += inner;
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out_ += options_.item_separator + inner;
      CKV_RETURN_IF_ERROR(Write(items[i], level + 1));
    }
    if (options_.indent) out_ += NewlineIndent(level);
    out_.push_back(']');
    return Status::OK();
  }

  Result<std::string> KeyText(const Value& key) const {
    switch (key.kind()) {
      case Value::Kind::kString:
        return key.str();
      case Value::Kind::kBool:
        return std::string(key.bool_value() ? "true" : "false");
      case Value::Kind::kNone:
        return std::string("null");
      case Value::Kind::kInt:
        return std::to_string(key.int_value());
      case Value::Kind::kFloat:
        return FloatText(key.number_value());
      default:
        return TypeError("keys must be str, int, float, bool or None, not " + TypeName(key));
    }
  }

  Status WriteDict(const Dict& dict, int level) {
    if (dict.empty()) {
      out_ += "{}";
      return Status::OK();
    }
    std::vector<const Dict::Item*> items;
    for (const Dict::Item& item : dict.items()) items.push_back(&item);
    if (options_.sort_keys) {
      Status error;
      std::stable_sort(items.begin(), items.end(), [&](const Dict::Item* a, const Dict::Item* b) {
        Result<bool> less = PyLess(a->first, b->first);
        if (!less.ok()) {
          error = less.status();
          return false;
        }
        return *less;
      });
      CKV_RETURN_IF_ERROR(error);
    }
    out_.push_back('{');
    const std::string inner = options_.indent ? NewlineIndent(level + 1) : std::string();
    out_ += inner;
    bool first = true;
    for (const Dict::Item* item : items) {
      if (!first) out_ += options_.item_separator + inner;
      first = false;
      CKV_ASSIGN_OR_RETURN(std::string key, KeyText(item->first));
      WriteString(key);
      out_ += options_.key_separator;
      CKV_RETURN_IF_ERROR(Write(item->second, level + 1));
    }
    if (options_.indent) out_ += NewlineIndent(level);
    out_.push_back('}');
    return Status::OK();
  }

  void AppendU(unsigned code) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "\\u%04x", code);
    out_ += buf;
  }

  // json.dumps' escape for one character below 0x80; false when it is written as is.
  bool AppendAsciiEscape(unsigned c) {
    switch (c) {
      case '"':
        out_ += "\\\"";
        return true;
      case '\\':
        out_ += "\\\\";
        return true;
      case '\n':
        out_ += "\\n";
        return true;
      case '\r':
        out_ += "\\r";
        return true;
      case '\t':
        out_ += "\\t";
        return true;
      case '\b':
        out_ += "\\b";
        return true;
      case '\f':
        out_ += "\\f";
        return true;
      default:
        break;
    }
    if (c < 0x20 || (options_.ensure_ascii && c == 0x7F)) {
      AppendU(c);
      return true;
    }
    return false;
  }

  void WriteString(const std::string& s) {
    out_.push_back('"');
    if (!options_.ensure_ascii || IsAscii(s)) {
      for (char ch : s) {
        if (!AppendAsciiEscape(static_cast<unsigned char>(ch))) out_.push_back(ch);
      }
    } else {
      for (char32_t c : DecodeUtf8(s)) {
        if (c < 0x80) {
          if (!AppendAsciiEscape(static_cast<unsigned>(c))) out_.push_back(static_cast<char>(c));
        } else if (c < 0x10000) {
          AppendU(static_cast<unsigned>(c));
        } else {  // a surrogate pair, as Python writes it
          const char32_t v = c - 0x10000;
          AppendU(0xD800 | static_cast<unsigned>(v >> 10));
          AppendU(0xDC00 | static_cast<unsigned>(v & 0x3FF));
        }
      }
    }
    out_.push_back('"');
  }

  const JsonDumpOptions& options_;
  std::string out_;
};

}  // namespace

Result<Value> FromJson(const nlohmann::ordered_json& json) {
  return Convert(json, 0);
}

Result<std::string> ToJson(const Value& value, const JsonDumpOptions& options) {
  JsonWriter writer(options);
  CKV_RETURN_IF_ERROR(writer.Write(value, 0));
  return writer.Take();
}

}  // namespace ckv::jinja
