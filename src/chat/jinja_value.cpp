#include "chat/jinja_value.h"

#include <algorithm>

#include "chat/jinja_text.h"

namespace ckv::jinja {

Value Value::Undefined(std::string hint) {
  Value v;
  if (!hint.empty()) v.ptr_ = std::make_shared<std::string>(std::move(hint));
  return v;
}

Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.b_ = b;
  return v;
}

Value Value::Int(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.i_ = i;
  return v;
}

Value Value::Float(double d) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.f_ = d;
  return v;
}

Value Value::String(std::string s) {
  Value v;
  v.kind_ = Kind::kString;
  v.ptr_ = std::make_shared<std::string>(std::move(s));
  return v;
}

void Value::Absorb(const Value& child) {
  depth_ = static_cast<uint16_t>(std::max<int>(depth_, std::min(child.depth_ + 1, 0xFFFF)));
  holds_namespace_ = holds_namespace_ || child.holds_namespace_;
}

Value Value::List(ValueList items) {
  Value v;
  v.kind_ = Kind::kList;
  for (const Value& item : items) v.Absorb(item);
  v.ptr_ = std::make_shared<ValueList>(std::move(items));
  return v;
}

Value Value::Tuple(ValueList items) {
  Value v = List(std::move(items));
  v.kind_ = Kind::kTuple;
  return v;
}

Value Value::FromDict(Dict dict) {
  Value v;
  v.kind_ = Kind::kDict;
  for (const Dict::Item& item : dict.items()) {
    v.Absorb(item.first);
    v.Absorb(item.second);
  }
  v.ptr_ = std::make_shared<Dict>(std::move(dict));
  return v;
}

Value Value::NewNamespace(Dict attrs) {
  Value v = FromDict(std::move(attrs));
  v.kind_ = Kind::kNamespace;
  v.holds_namespace_ = true;
  // A leaf for the containers that hold it: it never holds another namespace (the renderer
  // refuses that), so its contents are bounded when they are assigned.
  v.depth_ = 0;
  return v;
}

Value Value::FromCallable(std::shared_ptr<const Callable> callable) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.ptr_ = std::const_pointer_cast<Callable>(std::move(callable));
  return v;
}

std::string Value::UndefinedMessage() const {
  if (kind_ == Kind::kUndefined && ptr_) return str();
  return "value is undefined";
}

const Value* Dict::Find(const Value& key) const {
  if (key.is_string()) return Find(std::string_view(key.str()));
  for (const Item& item : items_) {
    if (PyEquals(item.first, key)) return &item.second;
  }
  return nullptr;
}

const Value* Dict::Find(std::string_view key) const {
  for (const Item& item : items_) {
    if (item.first.is_string() && item.first.str() == key) return &item.second;
  }
  return nullptr;
}

void Dict::Set(Value key, Value value) {
  for (Item& item : items_) {
    if (PyEquals(item.first, key)) {
      item.second = std::move(value);
      return;
    }
  }
  items_.emplace_back(std::move(key), std::move(value));
}

std::string TypeName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "str";
    case Value::Kind::kList:
      return "list";
    case Value::Kind::kTuple:
      return "tuple";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kNamespace:
      return "Namespace";
    case Value::Kind::kCallable:
      return "function";
  }
  return "object";
}

std::string ObjectTypeRepr(const Value& v) {
  if (v.is_none()) return "None";
  if (v.is_namespace()) return "jinja2.utils.Namespace object";
  return TypeName(v) + " object";
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.bool_value();
    case Value::Kind::kInt:
      return v.int_value() != 0;
    case Value::Kind::kFloat:
      return v.number_value() != 0.0;
    case Value::Kind::kString:
      return !v.str().empty();
    case Value::Kind::kList:
    case Value::Kind::kTuple:
      return !v.items().empty();
    case Value::Kind::kDict:
      return !v.dict().empty();
    case Value::Kind::kNamespace:
    case Value::Kind::kCallable:
      return true;
  }
  return false;
}

bool PyEquals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.number_value() == b.number_value();
    return a.int_value() == b.int_value();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.str() == b.str();
    case Value::Kind::kList:
    case Value::Kind::kTuple: {
      const ValueList& x = a.items();
      const ValueList& y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!PyEquals(x[i], y[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      if (a.dict().size() != b.dict().size()) return false;
      for (const Dict::Item& item : a.dict().items()) {
        const Value* other = b.dict().Find(item.first);
        if (other == nullptr || !PyEquals(item.second, *other)) return false;
      }
      return true;
    }
    default:
      return a.SameObject(b);
  }
}

Result<bool> PyLess(const Value& a, const Value& b) {
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.number_value() < b.number_value();
    return a.int_value() < b.int_value();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();  // UTF-8 order = code points
  if (a.kind() == b.kind() && a.is_sequence()) {
    const ValueList& x = a.items();
    const ValueList& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!PyEquals(x[i], y[i])) return PyLess(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  return TypeError("'<' not supported between instances of '" + TypeName(a) + "' and '" +
                   TypeName(b) + "'");
}

namespace {

// str() and repr() of a value and everything in it.
class Printer {
 public:
  explicit Printer(std::string* out) : out_(out) {}

  void Str(const Value& v) {
    switch (v.kind()) {
      case Value::Kind::kUndefined:
        return;
      case Value::Kind::kNone:
        *out_ += "None";
        return;
      case Value::Kind::kBool:
        *out_ += v.bool_value() ? "True" : "False";
        return;
      case Value::Kind::kInt:
        *out_ += std::to_string(v.int_value());
        return;
      case Value::Kind::kFloat:
        *out_ += PyFloatRepr(v.number_value());
        return;
      case Value::Kind::kString:
        *out_ += v.str();
        return;
      case Value::Kind::kList:
        out_->push_back('[');
        Items(v.items());
        out_->push_back(']');
        return;
      case Value::Kind::kTuple:
        out_->push_back('(');
        Items(v.items());
        if (v.items().size() == 1) out_->push_back(',');
        out_->push_back(')');
        return;
      case Value::Kind::kDict:
        DictBody(v.dict());
        return;
      case Value::Kind::kNamespace:
        *out_ += "<Namespace ";
        DictBody(v.namespace_attrs());
        out_->push_back('>');
        return;
      case Value::Kind::kCallable:
        *out_ += v.callable().Repr();
        return;
    }
  }

  void Repr(const Value& v) {
    if (v.is_string()) {
      *out_ += PyStrRepr(v.str());
    } else if (v.is_undefined()) {
      *out_ += "Undefined";
    } else {
      Str(v);
    }
  }

 private:
  void Items(const ValueList& items) {
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) *out_ += ", ";
      Repr(items[i]);
    }
  }

  void DictBody(const Dict& dict) {
    out_->push_back('{');
    bool first = true;
    for (const Dict::Item& item : dict.items()) {
      if (!first) *out_ += ", ";
      first = false;
      Repr(item.first);
      *out_ += ": ";
      Repr(item.second);
    }
    out_->push_back('}');
  }

  std::string* out_;
};

}  // namespace

void AppendPyStr(const Value& v, std::string* out) {
  Printer(out).Str(v);
}

std::string PyStr(const Value& v) {
  if (v.is_string()) return v.str();
  std::string out;
  AppendPyStr(v, &out);
  return out;
}

std::string PyRepr(const Value& v) {
  std::string out;
  Printer(&out).Repr(v);
  return out;
}

Status CheckHashable(const Value& key) {
  if (key.kind() == Value::Kind::kList || key.is_dict() || key.is_namespace()) {
    return TypeError("unhashable type: '" + TypeName(key) + "'");
  }
  if (key.kind() == Value::Kind::kTuple) {
    for (const Value& item : key.items()) CKV_RETURN_IF_ERROR(CheckHashable(item));
  }
  return Status::OK();
}

Status UndefinedError(const Value& v) {
  return Status::InvalidArgument(v.UndefinedMessage());
}

Status TypeError(std::string message) {
  return Status::InvalidArgument(std::move(message));
}

}  // namespace ckv::jinja
