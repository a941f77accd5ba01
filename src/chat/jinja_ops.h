// Python's operators as Jinja applies them: arithmetic, `in`, attribute and item access
// (Jinja's getattr tries the attribute then the item, getitem the other way round; misses
// give Undefined), slicing, iteration and len(). Errors are TypeErrors / UndefinedErrors as
// InvalidArgument statuses without a line; the renderer adds it.
#pragma once

#include <string_view>

#include "chat/jinja_ast.h"
#include "chat/jinja_value.h"

namespace ckv::jinja {

// Bound on strings and lists built by an operator or filter (repetition, join, replace):
// a template must not turn one request into gigabytes.
constexpr size_t kMaxBuiltBytes = size_t{64} << 20;
constexpr size_t kMaxBuiltItems = size_t{1} << 20;

Result<Value> ApplyBinary(BinaryOp op, const Value& a, const Value& b);
Result<Value> Negate(const Value& v);
Result<Value> UnaryPlus(const Value& v);
// `item in container`.
Result<bool> Contains(const Value& container, const Value& item);
// obj.name; `obj` must not be undefined (the caller raises its UndefinedError).
Value GetAttr(const Value& obj, std::string_view name);
// obj[key]; same contract.
Value GetItem(const Value& obj, const Value& key);
// obj[start:stop:step]; undefined / None bounds are omitted ones.
Result<Value> SliceOf(const Value& obj, const Value& start, const Value& stop, const Value& step);
// What `for x in v` visits: items, characters, dict keys; Undefined is empty.
Result<ValueList> Iterate(const Value& v);
// len(v); Undefined has length 0.
Result<int64_t> Length(const Value& v);
// Jinja's make_attrgetter: "a.b.0" looked up item by item (digits as indices); a missing
// step gives Undefined, reading through an undefined one an UndefinedError.
Result<Value> AttributePath(const Value& item, const Value& attribute);

}  // namespace ckv::jinja
