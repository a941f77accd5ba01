// String formatting with Python's semantics: the % operator (printf-style, used by the
// `format` filter too) and str.format with the common part of the format-spec
// mini-language ({}, {0}, {name}, {x.attr}, {x[key]}, !r / !s, fill, align, sign, width,
// grouping, precision, and the s d x X o b f F e E g G % types).
#pragma once

#include <string>

#include "chat/jinja_value.h"

namespace ckv::jinja {

// format % args: a tuple supplies the arguments in order, a dict the %(name)s ones, anything
// else is the single argument.
Result<Value> PercentFormat(const std::string& format, const Value& args);
// format.format(*args, **kwargs).
Result<Value> StrFormat(const std::string& format, const CallArgs& args);

}  // namespace ckv::jinja
