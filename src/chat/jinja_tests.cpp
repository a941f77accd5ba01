// The test table (`x is defined`, `n is divisibleby 3`): Jinja2 3.1's builtin tests.
#include <algorithm>

#include "chat/jinja_args.h"
#include "chat/jinja_builtins.h"
#include "chat/jinja_ops.h"
#include "chat/jinja_text.h"

namespace ckv::jinja {
namespace {

Result<bool> NoArgs(std::string_view what, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(what, args, {}));
  (void)a;
  return true;
}

// Tests that only look at the value's type or identity.
#define CKV_SIMPLE_TEST(fn_name, test_name, expr)                         \
  Result<bool> fn_name(Renderer&, const Value& v, const CallArgs& args) { \
    CKV_ASSIGN_OR_RETURN(bool ok, NoArgs("test '" test_name "'", args));  \
    (void)ok;                                                             \
    return (expr);                                                        \
  }

CKV_SIMPLE_TEST(TestDefined, "defined", !v.is_undefined())
CKV_SIMPLE_TEST(TestUndefined, "undefined", v.is_undefined())
CKV_SIMPLE_TEST(TestNone, "none", v.is_none())
CKV_SIMPLE_TEST(TestBoolean, "boolean", v.is_bool())
CKV_SIMPLE_TEST(TestTrue, "true", v.is_bool() && v.bool_value())
CKV_SIMPLE_TEST(TestFalse, "false", v.is_bool() && !v.bool_value())
CKV_SIMPLE_TEST(TestInteger, "integer", v.is_int())
CKV_SIMPLE_TEST(TestFloat, "float", v.is_float())
CKV_SIMPLE_TEST(TestNumber, "number", v.is_number())
CKV_SIMPLE_TEST(TestString, "string", v.is_string())
CKV_SIMPLE_TEST(TestMapping, "mapping", v.is_dict())
CKV_SIMPLE_TEST(TestCallable, "callable", v.is_callable())
// Undefined iterates as empty and has a length, so Jinja calls it iterable and a sequence.
CKV_SIMPLE_TEST(TestIterable, "iterable",
                v.is_sequence() || v.is_string() || v.is_dict() || v.is_undefined())
CKV_SIMPLE_TEST(TestSequence, "sequence",
                v.is_sequence() || v.is_string() || v.is_dict() || v.is_undefined())
CKV_SIMPLE_TEST(TestLower, "lower", PyIsClass(PyStr(v), CharClass::kLower))
CKV_SIMPLE_TEST(TestUpper, "upper", PyIsClass(PyStr(v), CharClass::kUpper))
// Only markup-safe strings are "escaped"; without autoescaping we make none.
CKV_SIMPLE_TEST(TestEscaped, "escaped", ((void)v, false))
CKV_SIMPLE_TEST(TestFilter, "filter", v.is_string() && FindFilter(v.str()) != nullptr)
CKV_SIMPLE_TEST(TestTest, "test", v.is_string() && FindTest(v.str()) != nullptr)

#undef CKV_SIMPLE_TEST

Result<Value> OneArg(std::string_view what, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(what, args, {"other"}, 1));
  return a.get(0);
}

Result<bool> ModuloIs(const Value& v, const Value& divisor, int64_t remainder) {
  CKV_ASSIGN_OR_RETURN(Value m, ApplyBinary(BinaryOp::kMod, v, divisor));
  return PyEquals(m, Value::Int(remainder));
}

Result<bool> TestOdd(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(bool ok, NoArgs("test 'odd'", args));
  (void)ok;
  return ModuloIs(v, Value::Int(2), 1);
}

Result<bool> TestEven(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(bool ok, NoArgs("test 'even'", args));
  (void)ok;
  return ModuloIs(v, Value::Int(2), 0);
}

Result<bool> TestDivisibleBy(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("test 'divisibleby'", args, {"num"}, 1));
  return ModuloIs(v, a.get(0), 0);
}

Result<bool> TestEq(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(Value other, OneArg("test 'eq'", args));
  return PyEquals(v, other);
}

Result<bool> TestNe(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(Value other, OneArg("test 'ne'", args));
  return !PyEquals(v, other);
}

Result<bool> TestLt(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(Value other, OneArg("test 'lt'", args));
  return PyLess(v, other);
}

Result<bool> TestGt(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(Value other, OneArg("test 'gt'", args));
  return PyLess(other, v);
}

Result<bool> TestLe(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(Value other, OneArg("test 'le'", args));
  CKV_ASSIGN_OR_RETURN(bool greater, PyLess(other, v));
  return !greater;
}

Result<bool> TestGe(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(Value other, OneArg("test 'ge'", args));
  CKV_ASSIGN_OR_RETURN(bool less, PyLess(v, other));
  return !less;
}

Result<bool> TestIn(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(Value seq, OneArg("test 'in'", args));
  return Contains(seq, v);
}

// Python's `is`: singletons and numbers by value (CPython caches small ints, and nobody
// relies on identity of others), containers by object.
Result<bool> TestSameAs(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(Value other, OneArg("test 'sameas'", args));
  if (v.kind() != other.kind()) return false;
  switch (v.kind()) {
    case Value::Kind::kNone:
    case Value::Kind::kUndefined:
      return true;
    case Value::Kind::kBool:
    case Value::Kind::kInt:
    case Value::Kind::kFloat:
      return PyEquals(v, other);
    default:
      return v.SameObject(other);
  }
}

constexpr TestDef kTests[] = {
    {"!=", TestNe},
    {"<", TestLt},
    {"<=", TestLe},
    {"==", TestEq},
    {">", TestGt},
    {">=", TestGe},
    {"boolean", TestBoolean},
    {"callable", TestCallable},
    {"defined", TestDefined},
    {"divisibleby", TestDivisibleBy},
    {"eq", TestEq},
    {"equalto", TestEq},
    {"escaped", TestEscaped},
    {"even", TestEven},
    {"false", TestFalse},
    {"filter", TestFilter},
    {"float", TestFloat},
    {"ge", TestGe},
    {"greaterthan", TestGt},
    {"gt", TestGt},
    {"in", TestIn},
    {"integer", TestInteger},
    {"iterable", TestIterable},
    {"le", TestLe},
    {"lessthan", TestLt},
    {"lower", TestLower},
    {"lt", TestLt},
    {"mapping", TestMapping},
    {"ne", TestNe},
    {"none", TestNone},
    {"number", TestNumber},
    {"odd", TestOdd},
    {"sameas", TestSameAs},
    {"sequence", TestSequence},
    {"string", TestString},
    {"test", TestTest},
    {"true", TestTrue},
    {"undefined", TestUndefined},
    {"upper", TestUpper},
};

}  // namespace

const TestDef* FindTest(std::string_view name) {
  for (const TestDef& def : kTests) {
    if (def.name == name) return &def;
  }
  return nullptr;
}

// Jinja2 3.1 has no builtin test we leave out.
bool IsUnsupportedJinjaTest(std::string_view) {
  return false;
}

}  // namespace ckv::jinja
