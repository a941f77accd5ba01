#include "chat/jinja_args.h"

namespace ckv::jinja {

Result<BoundArgs> BoundArgs::Bind(std::string_view what, const CallArgs& args,
                                  std::initializer_list<std::string_view> params, size_t required) {
  BoundArgs bound;
  bound.values_.resize(params.size());
  if (args.positional.size() > params.size()) {
    return TypeError(std::string(what) + " takes at most " + std::to_string(params.size()) +
                     " argument(s), " + std::to_string(args.positional.size()) + " given");
  }
  for (size_t i = 0; i < args.positional.size(); ++i) bound.values_[i] = args.positional[i];
  for (const auto& [name, value] : args.keyword) {
    size_t i = 0;
    for (std::string_view p : params) {
      if (p == name) break;
      ++i;
    }
    if (i == params.size()) {
      return TypeError(std::string(what) + " got an unexpected keyword argument '" + name + "'");
    }
    if (bound.values_[i].has_value()) {
      return TypeError(std::string(what) + " got multiple values for argument '" + name + "'");
    }
    bound.values_[i] = value;
  }
  for (size_t i = 0; i < required; ++i) {
    if (!bound.values_[i].has_value()) {
      return TypeError(std::string(what) + " missing required argument '" +
                       std::string(params.begin()[i]) + "'");
    }
  }
  return bound;
}

Result<int64_t> IntArg(std::string_view what, const Value& v) {
  if (v.is_undefined()) return UndefinedError(v);
  if (!v.is_integral()) {
    return TypeError(std::string(what) + " must be an integer, not '" + TypeName(v) + "'");
  }
  return v.int_value();
}

Result<std::string> StrArg(std::string_view what, const Value& v) {
  if (v.is_undefined()) return UndefinedError(v);
  if (!v.is_string()) {
    return TypeError(std::string(what) + " must be a string, not '" + TypeName(v) + "'");
  }
  return v.str();
}

}  // namespace ckv::jinja
