// The builtin tables: filters, tests, global functions and the methods of Python's str,
// dict and list. Each kind lives in one table, looked up by name at parse time (filters,
// tests, globals) or when an attribute is read (methods). Names Jinja has but we do not
// implement are listed too, so that Parse can say "unsupported" instead of "unknown".
#pragma once

#include <optional>
#include <string_view>

#include "chat/jinja_value.h"

namespace ckv::jinja {

using FilterFn = Result<Value> (*)(Renderer& renderer, const Value& input, const CallArgs& args);
using TestFn = Result<bool> (*)(Renderer& renderer, const Value& input, const CallArgs& args);

struct FilterDef {
  std::string_view name;
  FilterFn fn;
};

struct TestDef {
  std::string_view name;
  TestFn fn;
};

// nullptr when there is no such filter / test / global.
const FilterDef* FindFilter(std::string_view name);
const TestDef* FindTest(std::string_view name);
const Value* FindGlobal(std::string_view name);

bool IsUnsupportedJinjaFilter(std::string_view name);
bool IsUnsupportedJinjaTest(std::string_view name);
bool IsUnsupportedJinjaGlobal(std::string_view name);

// `obj.name` bound to obj when obj's Python type has a method of that name (str.upper,
// dict.items, list.index). Python methods we do not implement, and the mutating ones the
// immutable sandbox forbids, are bound too and fail when called, naming the method.
std::optional<Value> FindMethod(const Value& obj, std::string_view name);

}  // namespace ckv::jinja
