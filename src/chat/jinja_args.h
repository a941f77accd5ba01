// Binding a call's arguments to a Python-style parameter list (positional first, then by
// keyword), for builtin filters, tests, functions and methods.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/jinja_value.h"

namespace ckv::jinja {

class BoundArgs {
 public:
  // `what` names the callee in errors ("filter 'join'"). The first `required` parameters
  // must be given.
  static Result<BoundArgs> Bind(std::string_view what, const CallArgs& args,
                                std::initializer_list<std::string_view> params,
                                size_t required = 0);

  bool has(size_t i) const { return values_[i].has_value(); }
  // The argument, or `fallback` when it was not given.
  Value get(size_t i, Value fallback = Value()) const {
    return values_[i].has_value() ? *values_[i] : std::move(fallback);
  }

 private:
  std::vector<std::optional<Value>> values_;
};

// Argument checks shared by the builtins; `what` names the callee and the parameter.
Result<int64_t> IntArg(std::string_view what, const Value& v);
Result<std::string> StrArg(std::string_view what, const Value& v);

}  // namespace ckv::jinja
