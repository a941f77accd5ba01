// The global functions: Jinja's range / namespace / dict and Hugging Face's
// raise_exception / strftime_now.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_args.h"
#include "chat/jinja_builtins.h"
#include "chat/jinja_ops.h"
#include "chat/jinja_render.h"

namespace ckv::jinja {
namespace {

// The sandbox's MAX_RANGE: Hugging Face renders in a sandboxed environment.
constexpr int64_t kMaxRange = 100000;

using GlobalFn = Result<Value> (*)(Renderer& renderer, const CallArgs& args);

class GlobalFunction final : public Callable {
 public:
  GlobalFunction(std::string_view name, GlobalFn fn) : name_(name), fn_(fn) {}
  std::string Repr() const override { return "<built-in function " + std::string(name_) + ">"; }
  Result<Value> Call(Renderer& renderer, CallArgs args) const override {
    return fn_(renderer, args);
  }

 private:
  std::string_view name_;
  GlobalFn fn_;
};

Result<Value> Range(Renderer&, const CallArgs& args) {
  if (!args.keyword.empty()) return TypeError("range() takes no keyword arguments");
  const size_t n = args.positional.size();
  if (n < 1 || n > 3) return TypeError("range expected 1 to 3 arguments, got " + std::to_string(n));
  int64_t bounds[3] = {0, 0, 1};
  for (size_t i = 0; i < n; ++i) {
    const Value& v = args.positional[i];
    if (v.is_undefined()) return UndefinedError(v);
    if (!v.is_integral()) {
      return TypeError("'" + TypeName(v) + "' object cannot be interpreted as an integer");
    }
  }
  if (n == 1) {
    bounds[1] = args.positional[0].int_value();
  } else {
    bounds[0] = args.positional[0].int_value();
    bounds[1] = args.positional[1].int_value();
    if (n == 3) bounds[2] = args.positional[2].int_value();
  }
  const int64_t start = bounds[0];
  const int64_t stop = bounds[1];
  const int64_t step = bounds[2];
  if (step == 0) return Status::InvalidArgument("range() arg 3 must not be zero");
  // Lengths in double: start / stop may be anywhere in int64.
  const double span = step > 0 ? static_cast<double>(stop) - static_cast<double>(start)
                               : static_cast<double>(start) - static_cast<double>(stop);
  const double count = span <= 0 ? 0 : std::ceil(span / std::fabs(static_cast<double>(step)));
  if (count > static_cast<double>(kMaxRange)) {
    return Status::OutOfRange(
        "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  }
  ValueList items;
  items.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < static_cast<int64_t>(count); ++i)
    items.push_back(Value::Int(start + i * step));
  return Value::List(std::move(items));
}

// dict(mapping_or_pairs, **kwargs): the common part of namespace() and dict().
Result<Dict> DictFromArgs(std::string_view what, const CallArgs& args) {
  if (args.positional.size() > 1) {
    return TypeError(std::string(what) + " expected at most 1 positional argument");
  }
  Dict dict;
  if (!args.positional.empty()) {
    const Value& src = args.positional[0];
    if (src.is_dict() || src.is_namespace()) {
      for (const Dict::Item& item : src.dict().items()) dict.Set(item.first, item.second);
    } else {
      CKV_ASSIGN_OR_RETURN(ValueList pairs, Iterate(src));
      for (const Value& pair : pairs) {
        if (!pair.is_sequence() || pair.items().size() != 2) {
          return TypeError(std::string(what) + ": sequence elements must be pairs");
        }
        CKV_RETURN_IF_ERROR(CheckHashable(pair.items()[0]));
        dict.Set(pair.items()[0], pair.items()[1]);
      }
    }
  }
  for (const auto& [key, value] : args.keyword) dict.Set(Value::String(key), value);
  return dict;
}

Result<Value> Namespace(Renderer&, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(Dict attrs, DictFromArgs("namespace()", args));
  for (const Dict::Item& item : attrs.items()) {
    if (!item.first.is_string()) return TypeError("namespace() attribute names must be strings");
    // As for `set ns.x = ...`: namespaces never hold namespaces (see Renderer::ExecSet).
    if (item.second.may_hold_namespace()) {
      return Status::Unsupported("unsupported: a namespace attribute holding a namespace");
    }
  }
  return Value::NewNamespace(std::move(attrs));
}

Result<Value> MakeDict(Renderer&, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(Dict dict, DictFromArgs("dict()", args));
  return Value::FromDict(std::move(dict));
}

Result<Value> RaiseException(Renderer& renderer, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("raise_exception()", args, {"message"}, 1));
  return renderer.Raise(PyStr(a.get(0)));
}

Result<Value> StrftimeNow(Renderer&, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("strftime_now()", args, {"format"}, 1));
  CKV_ASSIGN_OR_RETURN(std::string format, StrArg("strftime_now() format", a.get(0)));
  if (format.empty()) return Value::String("");
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  std::string buf(256 + format.size() * 16, '\0');
  const size_t n = std::strftime(buf.data(), buf.size(), format.c_str(), &local);
  if (n == 0) return Status::InvalidArgument("strftime_now(): format gives no output");
  buf.resize(n);
  return Value::String(std::move(buf));
}

struct GlobalDef {
  std::string_view name;
  GlobalFn fn;
};

constexpr GlobalDef kGlobals[] = {
    {"dict", MakeDict}, {"namespace", Namespace},      {"raise_exception", RaiseException},
    {"range", Range},   {"strftime_now", StrftimeNow},
};

constexpr std::string_view kUnsupportedGlobals[] = {"cycler", "joiner", "lipsum"};

}  // namespace

const Value* FindGlobal(std::string_view name) {
  // Built once, then only read: shared by every render on every thread.
  static const std::vector<std::pair<std::string_view, Value>>* const kValues = [] {
    auto* values = new std::vector<std::pair<std::string_view, Value>>();
    for (const GlobalDef& def : kGlobals) {
      values->emplace_back(def.name,
                           Value::FromCallable(std::make_shared<GlobalFunction>(def.name, def.fn)));
    }
    return values;
  }();
  for (const auto& [global_name, value] : *kValues) {
    if (global_name == name) return &value;
  }
  return nullptr;
}

bool IsUnsupportedJinjaGlobal(std::string_view name) {
  return std::find(std::begin(kUnsupportedGlobals), std::end(kUnsupportedGlobals), name) !=
         std::end(kUnsupportedGlobals);
}

}  // namespace ckv::jinja
