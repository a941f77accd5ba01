#include "chat/jinja_ops.h"

#include <cmath>
#include <limits>

#include "chat/jinja_builtins.h"
#include "chat/jinja_format.h"
#include "chat/jinja_text.h"

namespace ckv::jinja {
namespace {

Status OverflowError() {
  return Status::InvalidArgument("integer result out of 64-bit range");
}

Status TooLarge() {
  return Status::OutOfRange("value larger than " + std::to_string(kMaxBuiltBytes >> 20) +
                            " MiB built by the template");
}

const char* OpSymbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd:
      return "+";
    case BinaryOp::kSub:
      return "-";
    case BinaryOp::kMul:
      return "*";
    case BinaryOp::kDiv:
      return "/";
    case BinaryOp::kFloorDiv:
      return "//";
    case BinaryOp::kMod:
      return "%";
    case BinaryOp::kPow:
      return "**";
  }
  return "?";
}

Status Unsupported(BinaryOp op, const Value& a, const Value& b) {
  if (op == BinaryOp::kAdd && (a.is_string() || a.is_sequence())) {
    return TypeError("can only concatenate " + TypeName(a) + " (not \"" + TypeName(b) + "\") to " +
                     TypeName(a));
  }
  return TypeError(std::string("unsupported operand type(s) for ") + OpSymbol(op) + ": '" +
                   TypeName(a) + "' and '" + TypeName(b) + "'");
}

// Python's float divmod (Objects/floatobject.c), so that -7.5 // 2 and -7.5 % 2 match.
void FloatDivMod(double vx, double wx, double* floordiv, double* mod) {
  double m = std::fmod(vx, wx);
  double div = (vx - m) / wx;
  if (m != 0.0) {
    if ((wx < 0) != (m < 0)) {
      m += wx;
      div -= 1.0;
    }
  } else {
    m = std::copysign(0.0, wx);
  }
  double fd;
  if (div != 0.0) {
    fd = std::floor(div);
    if (div - fd > 0.5) fd += 1.0;
  } else {
    fd = std::copysign(0.0, vx / wx);
  }
  *floordiv = fd;
  *mod = m;
}

Result<Value> Repeat(const Value& seq, int64_t times) {
  if (times <= 0) {
    if (seq.is_string()) return Value::String("");
    return seq.kind() == Value::Kind::kTuple ? Value::Tuple({}) : Value::List({});
  }
  if (seq.is_string()) {
    const size_t n = seq.str().size();
    if (n != 0 && static_cast<uint64_t>(times) > kMaxBuiltBytes / n) return TooLarge();
    std::string out;
    out.reserve(n * static_cast<size_t>(times));
    for (int64_t i = 0; i < times; ++i) out += seq.str();
    return Value::String(std::move(out));
  }
  const ValueList& items = seq.items();
  if (!items.empty() && static_cast<uint64_t>(times) > kMaxBuiltItems / items.size()) {
    return TooLarge();
  }
  ValueList out;
  out.reserve(items.size() * static_cast<size_t>(times));
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
  return seq.kind() == Value::Kind::kTuple ? Value::Tuple(std::move(out))
                                           : Value::List(std::move(out));
}

Result<Value> IntPow(int64_t base, int64_t exp) {
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1) {
      if (__builtin_mul_overflow(result, base, &result)) return OverflowError();
    }
    exp >>= 1;
    if (exp > 0 && __builtin_mul_overflow(base, base, &base)) return OverflowError();
  }
  return Value::Int(result);
}

Result<Value> Arithmetic(BinaryOp op, const Value& a, const Value& b) {
  if (a.is_integral() && b.is_integral()) {
    const int64_t x = a.int_value();
    const int64_t y = b.int_value();
    int64_t r = 0;
    switch (op) {
      case BinaryOp::kAdd:
        if (__builtin_add_overflow(x, y, &r)) return OverflowError();
        return Value::Int(r);
      case BinaryOp::kSub:
        if (__builtin_sub_overflow(x, y, &r)) return OverflowError();
        return Value::Int(r);
      case BinaryOp::kMul:
        if (__builtin_mul_overflow(x, y, &r)) return OverflowError();
        return Value::Int(r);
      case BinaryOp::kDiv:
        if (y == 0) return Status::InvalidArgument("division by zero");
        return Value::Float(static_cast<double>(x) / static_cast<double>(y));
      case BinaryOp::kFloorDiv:
      case BinaryOp::kMod: {
        if (y == 0) return Status::InvalidArgument("integer division or modulo by zero");
        if (x == std::numeric_limits<int64_t>::min() && y == -1) return OverflowError();
        int64_t q = x / y;
        int64_t m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {  // Python rounds toward negative infinity
          q -= 1;
          m += y;
        }
        return Value::Int(op == BinaryOp::kFloorDiv ? q : m);
      }
      case BinaryOp::kPow:
        if (y < 0) {
          if (x == 0) return Status::InvalidArgument("0.0 cannot be raised to a negative power");
          return Value::Float(std::pow(static_cast<double>(x), static_cast<double>(y)));
        }
        return IntPow(x, y);
    }
  }
  const double x = a.number_value();
  const double y = b.number_value();
  switch (op) {
    case BinaryOp::kAdd:
      return Value::Float(x + y);
    case BinaryOp::kSub:
      return Value::Float(x - y);
    case BinaryOp::kMul:
      return Value::Float(x * y);
    case BinaryOp::kDiv:
      if (y == 0) return Status::InvalidArgument("float division by zero");
      return Value::Float(x / y);
    case BinaryOp::kFloorDiv:
    case BinaryOp::kMod: {
      if (y == 0) return Status::InvalidArgument("float floor division or modulo by zero");
      double fd = 0;
      double m = 0;
      FloatDivMod(x, y, &fd, &m);
      return Value::Float(op == BinaryOp::kFloorDiv ? fd : m);
    }
    case BinaryOp::kPow: {
      if (x == 0 && y < 0) {
        return Status::InvalidArgument("0.0 cannot be raised to a negative power");
      }
      const double r = std::pow(x, y);
      // Python raises where C overflows to infinity.
      if (std::isinf(r) && std::isfinite(x) && std::isfinite(y)) {
        return Status::InvalidArgument("(34, 'Numerical result out of range')");
      }
      return Value::Float(r);
    }
  }
  return Unsupported(op, a, b);
}

// Python's slice index adjustment (PySlice_AdjustIndices) for one bound.
int64_t AdjustIndex(const Value& bound, int64_t length, int64_t step, bool is_start) {
  if (bound.is_none()) {
    if (is_start) return step < 0 ? length - 1 : 0;
    return step < 0 ? -1 : length;
  }
  int64_t i = bound.int_value();
  if (i < 0) {
    i += length;
    if (i < 0) i = step < 0 ? -1 : 0;
  } else if (i >= length) {
    i = step < 0 ? length - 1 : length;
  }
  return i;
}

Value NoAttribute(const Value& obj, std::string_view name) {
  return Value::Undefined("'" + ObjectTypeRepr(obj) + "' has no attribute " + PyStrRepr(name));
}

Value NoElement(const Value& obj, const Value& key) {
  return Value::Undefined(ObjectTypeRepr(obj) + " has no element " + PyRepr(key));
}

}  // namespace

Result<Value> ApplyBinary(BinaryOp op, const Value& a, const Value& b) {
  if (a.is_undefined()) return UndefinedError(a);
  // str % x is Python's str.__mod__, which formats an Undefined without asking it.
  if (op == BinaryOp::kMod && a.is_string()) return PercentFormat(a.str(), b);
  if (b.is_undefined()) return UndefinedError(b);
  if (a.is_number() && b.is_number()) return Arithmetic(op, a, b);
  switch (op) {
    case BinaryOp::kAdd:
      if (a.is_string() && b.is_string()) {
        if (a.str().size() + b.str().size() > kMaxBuiltBytes) return TooLarge();
        return Value::String(a.str() + b.str());
      }
      if (a.is_sequence() && a.kind() == b.kind()) {
        if (a.items().size() + b.items().size() > kMaxBuiltItems) return TooLarge();
        ValueList out = a.items();
        out.insert(out.end(), b.items().begin(), b.items().end());
        return a.kind() == Value::Kind::kTuple ? Value::Tuple(std::move(out))
                                               : Value::List(std::move(out));
      }
      break;
    case BinaryOp::kMul:
      if ((a.is_string() || a.is_sequence()) && b.is_integral()) return Repeat(a, b.int_value());
      if ((b.is_string() || b.is_sequence()) && a.is_integral()) return Repeat(b, a.int_value());
      break;
    default:
      break;
  }
  return Unsupported(op, a, b);
}

Result<Value> Negate(const Value& v) {
  if (v.is_undefined()) return UndefinedError(v);
  if (v.is_float()) return Value::Float(-v.number_value());
  if (v.is_integral()) {
    if (v.int_value() == std::numeric_limits<int64_t>::min()) return OverflowError();
    return Value::Int(-v.int_value());
  }
  return TypeError("bad operand type for unary -: '" + TypeName(v) + "'");
}

Result<Value> UnaryPlus(const Value& v) {
  if (v.is_undefined()) return UndefinedError(v);
  if (v.is_float()) return v;
  if (v.is_integral()) return Value::Int(v.int_value());
  return TypeError("bad operand type for unary +: '" + TypeName(v) + "'");
}

Result<bool> Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kString:
      if (!item.is_string()) {
        return TypeError("'in <string>' requires string as left operand, not " + TypeName(item));
      }
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
    case Value::Kind::kTuple:
      for (const Value& v : container.items()) {
        if (PyEquals(v, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      CKV_RETURN_IF_ERROR(CheckHashable(item));
      return container.dict().Find(item) != nullptr;
    case Value::Kind::kUndefined:
      return false;
    default:
      return TypeError("argument of type '" + TypeName(container) + "' is not iterable");
  }
}

Value GetAttr(const Value& obj, std::string_view name) {
  if (!name.empty() && name[0] == '_') {
    // The sandbox hides private and dunder attributes.
    return Value::Undefined("access to attribute " + PyStrRepr(name) + " of " +
                            PyStrRepr(TypeName(obj)) + " object is unsafe.");
  }
  if (obj.is_namespace()) {
    const Value* v = obj.namespace_attrs().Find(name);
    return v != nullptr ? *v : NoAttribute(obj, name);
  }
  // Python attributes (methods) come before dict items: {{ d.items }} is the method.
  if (std::optional<Value> method = FindMethod(obj, name)) return *method;
  if (obj.is_dict()) {
    const Value* v = obj.dict().Find(name);
    if (v != nullptr) return *v;
  }
  return NoAttribute(obj, name);
}

Value GetItem(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Value::Kind::kDict:
      if (CheckHashable(key).ok()) {
        const Value* v = obj.dict().Find(key);
        if (v != nullptr) return *v;
      }
      break;
    case Value::Kind::kList:
    case Value::Kind::kTuple:
      if (key.is_integral()) {
        const auto n = static_cast<int64_t>(obj.items().size());
        int64_t i = key.int_value();
        if (i < 0) i += n;
        if (i >= 0 && i < n) return obj.items()[static_cast<size_t>(i)];
        return NoElement(obj, key);
      }
      break;
    case Value::Kind::kString:
      if (key.is_integral()) {
        const std::u32string cps = DecodeUtf8(obj.str());
        const auto n = static_cast<int64_t>(cps.size());
        int64_t i = key.int_value();
        if (i < 0) i += n;
        if (i >= 0 && i < n) {
          std::string out;
          AppendUtf8(cps[static_cast<size_t>(i)], &out);
          return Value::String(std::move(out));
        }
        return NoElement(obj, key);
      }
      break;
    default:
      break;
  }
  // Jinja falls back to the attribute for string keys: {{ ns['a'] }}, {{ d['items'] }}.
  if (key.is_string()) return GetAttr(obj, key.str());
  return NoElement(obj, key);
}

Result<Value> SliceOf(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  for (const Value* bound : {&start, &stop, &step}) {
    if (!bound->is_none() && !bound->is_integral()) {
      return TypeError("slice indices must be integers or None or have an __index__ method");
    }
  }
  const int64_t st = step.is_none() ? 1 : step.int_value();
  if (st == 0) return Status::InvalidArgument("slice step cannot be zero");
  std::u32string cps;
  int64_t length = 0;
  if (obj.is_string()) {
    cps = DecodeUtf8(obj.str());
    length = static_cast<int64_t>(cps.size());
  } else if (obj.is_sequence()) {
    length = static_cast<int64_t>(obj.items().size());
  } else if (obj.is_dict()) {
    return TypeError("unhashable type: 'slice'");
  } else {
    // Jinja compiles slices to a plain Python subscript, so these raise.
    return TypeError("'" + TypeName(obj) + "' object is not subscriptable");
  }
  const int64_t begin = AdjustIndex(start, length, st, true);
  const int64_t end = AdjustIndex(stop, length, st, false);
  std::vector<size_t> picks;
  for (int64_t i = begin; st > 0 ? i < end : i > end; i += st)
    picks.push_back(static_cast<size_t>(i));
  if (obj.is_string()) {
    std::string out;
    for (size_t i : picks) AppendUtf8(cps[i], &out);
    return Value::String(std::move(out));
  }
  ValueList out;
  out.reserve(picks.size());
  for (size_t i : picks) out.push_back(obj.items()[i]);
  return obj.kind() == Value::Kind::kTuple ? Value::Tuple(std::move(out))
                                           : Value::List(std::move(out));
}

Result<ValueList> Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kList:
    case Value::Kind::kTuple:
      return v.items();
    case Value::Kind::kString: {
      ValueList out;
      for (char32_t c : DecodeUtf8(v.str())) {
        std::string s;
        AppendUtf8(c, &s);
        out.push_back(Value::String(std::move(s)));
      }
      return out;
    }
    case Value::Kind::kDict: {
      ValueList out;
      out.reserve(v.dict().size());
      for (const Dict::Item& item : v.dict().items()) out.push_back(item.first);
      return out;
    }
    case Value::Kind::kUndefined:
      return ValueList();
    default:
      return TypeError("'" + TypeName(v) + "' object is not iterable");
  }
}

Result<int64_t> Length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kString:
      return static_cast<int64_t>(CodePointCount(v.str()));
    case Value::Kind::kList:
    case Value::Kind::kTuple:
      return static_cast<int64_t>(v.items().size());
    case Value::Kind::kDict:
      return static_cast<int64_t>(v.dict().size());
    case Value::Kind::kUndefined:
      return 0;
    default:
      return TypeError("object of type '" + TypeName(v) + "' has no len()");
  }
}

Result<Value> AttributePath(const Value& item, const Value& attribute) {
  if (!attribute.is_string()) {
    if (item.is_undefined()) return UndefinedError(item);
    return GetItem(item, attribute);
  }
  Value current = item;
  const std::string& path = attribute.str();
  size_t begin = 0;
  while (true) {
    const size_t dot = path.find('.', begin);
    const std::string part = path.substr(begin, dot == std::string::npos ? dot : dot - begin);
    if (current.is_undefined()) return UndefinedError(current);
    const bool digits = !part.empty() &&
                        part.find_first_not_of("0123456789") == std::string::npos &&
                        part.size() < 18;
    current = GetItem(current, digits ? Value::Int(std::stoll(part)) : Value::String(part));
    if (dot == std::string::npos) return current;
    begin = dot + 1;
  }
}

}  // namespace ckv::jinja
