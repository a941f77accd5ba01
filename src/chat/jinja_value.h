// The runtime value of the Jinja interpreter: Python's objects as templates see them (None,
// bool, int, float, str, list, tuple, dict, Jinja's Undefined and namespace, callables), with
// Python's truthiness, equality, ordering, str() and repr(). Containers are shared and
// immutable once built (Hugging Face renders in an immutable sandbox); only a namespace is
// mutable, and it never leaves the render that created it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ckv/status.h"

namespace ckv::jinja {

class Value;
class Dict;
class Callable;
class Renderer;
using ValueList = std::vector<Value>;

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kTuple,
    kDict,
    kNamespace,
    kCallable,
  };

  Value() = default;  // Undefined without a hint
  // `hint` is the UndefinedError message raised when the value is used ("'x' is undefined").
  static Value Undefined(std::string hint);
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double d);
  static Value String(std::string s);
  static Value List(ValueList items);
  static Value Tuple(ValueList items);
  static Value FromDict(Dict dict);
  static Value NewNamespace(Dict attrs);
  static Value FromCallable(std::shared_ptr<const Callable> callable);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_string() const { return kind_ == Kind::kString; }
  // A list or a tuple.
  bool is_sequence() const { return kind_ == Kind::kList || kind_ == Kind::kTuple; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_callable() const { return kind_ == Kind::kCallable; }
  // Python's numbers.Number: bool counts, as in Python.
  bool is_number() const {
    return kind_ == Kind::kBool || kind_ == Kind::kInt || kind_ == Kind::kFloat;
  }
  // int or bool: Python's int.
  bool is_integral() const { return kind_ == Kind::kBool || kind_ == Kind::kInt; }

  bool bool_value() const { return b_; }
  // int and bool as int64.
  int64_t int_value() const { return kind_ == Kind::kBool ? (b_ ? 1 : 0) : i_; }
  // Any number as double.
  double number_value() const {
    return kind_ == Kind::kFloat ? f_ : static_cast<double>(int_value());
  }
  const std::string& str() const { return *static_cast<const std::string*>(ptr_.get()); }
  const ValueList& items() const { return *static_cast<const ValueList*>(ptr_.get()); }
  // A dict, or a namespace's attributes.
  const Dict& dict() const { return *static_cast<const Dict*>(ptr_.get()); }
  Dict& namespace_attrs() const { return *static_cast<Dict*>(ptr_.get()); }
  const Callable& callable() const { return *static_cast<const Callable*>(ptr_.get()); }
  // Nesting of containers (0 for a scalar or a namespace), recorded when a container is
  // built; the renderer bounds it so that printing, comparing and freeing values cannot
  // exhaust the stack.
  int depth() const { return depth_; }
  // A namespace is this value or inside it (exact: containers do not change once built,
  // and namespaces never hold namespaces).
  bool may_hold_namespace() const { return holds_namespace_; }
  // Same object (Python's `is` for containers).
  bool SameObject(const Value& other) const { return ptr_ && ptr_ == other.ptr_; }
  // The UndefinedError message for an undefined value.
  std::string UndefinedMessage() const;

 private:
  // Takes a child's nesting depth and namespace flag into this container's.
  void Absorb(const Value& child);

  Kind kind_ = Kind::kUndefined;
  bool holds_namespace_ = false;
  uint16_t depth_ = 0;
  union {
    bool b_;
    int64_t i_;
    double f_ = 0;
  };
  // string, list items, dict, callable, or an undefined value's hint.
  std::shared_ptr<void> ptr_;
};

// A dict with Python's insertion order; keys are compared with Python's ==. Dicts in chat
// templates are small (message fields, tool schemas), so lookups scan.
class Dict {
 public:
  using Item = std::pair<Value, Value>;
  const Value* Find(const Value& key) const;
  const Value* Find(std::string_view key) const;
  // Replaces the value of an existing key in place, else appends.
  void Set(Value key, Value value);
  const std::vector<Item>& items() const { return items_; }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }

 private:
  std::vector<Item> items_;
};

struct CallArgs {
  ValueList positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Macros, builtin functions, bound methods. Errors carry no line; the caller adds it.
class Callable {
 public:
  virtual ~Callable() = default;
  virtual std::string Repr() const = 0;
  virtual Result<Value> Call(Renderer& renderer, CallArgs args) const = 0;
};

// Python's type name ("str", "NoneType", "dict"), for error messages.
std::string TypeName(const Value& v);
// Jinja's object_type_repr ("dict object", "None"), for undefined hints.
std::string ObjectTypeRepr(const Value& v);
bool Truthy(const Value& v);
// Python's ==: 1 == 1.0 == True, lists and dicts by content, Undefined equals Undefined.
bool PyEquals(const Value& a, const Value& b);
// Python's <; a TypeError (as a Status) for unorderable types, an UndefinedError for undefined.
Result<bool> PyLess(const Value& a, const Value& b);
// str(v): what {{ v }} prints. Undefined prints nothing.
std::string PyStr(const Value& v);
void AppendPyStr(const Value& v, std::string* out);
// repr(v): how v prints inside a container.
std::string PyRepr(const Value& v);
// A dict key must be hashable: no list, dict or namespace.
Status CheckHashable(const Value& key);
// The UndefinedError of using `v`.
Status UndefinedError(const Value& v);
// Deepest container nesting a render may build (JSON inputs included).
constexpr int kMaxValueDepth = 512;

// Errors raised by templates at render time are InvalidArgument: the inputs or the template
// are at fault, not the server.
Status TypeError(std::string message);

}  // namespace ckv::jinja
