// The filter table: Jinja2 3.1's builtin filters that chat templates use, with Hugging
// Face's `tojson` (json.dumps with ensure_ascii=False, not Jinja's HTML-safe one).
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "chat/jinja_args.h"
#include "chat/jinja_builtins.h"
#include "chat/jinja_format.h"
#include "chat/jinja_json.h"
#include "chat/jinja_ops.h"
#include "chat/jinja_text.h"

namespace ckv::jinja {
namespace {

Status TooLarge(std::string_view what) {
  return Status::OutOfRange(std::string(what) + ": result larger than " +
                            std::to_string(kMaxBuiltBytes >> 20) + " MiB");
}

// Jinja's ignore_case: strings compare lowercased unless case_sensitive.
Value SortKey(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::String(PyLower(v.str()));
  return v;
}

// Items of `input` paired with their sort keys (attribute path, then case folding).
Result<std::vector<std::pair<Value, Value>>> Keyed(const Value& input, const Value& attribute,
                                                   bool case_sensitive) {
  CKV_ASSIGN_OR_RETURN(ValueList items, Iterate(input));
  std::vector<std::pair<Value, Value>> keyed;
  keyed.reserve(items.size());
  for (Value& item : items) {
    Value key = item;
    if (!attribute.is_none() && !attribute.is_undefined()) {
      CKV_ASSIGN_OR_RETURN(key, AttributePath(item, attribute));
    }
    keyed.emplace_back(SortKey(key, case_sensitive), std::move(item));
  }
  return keyed;
}

Status StableSortByKey(std::vector<std::pair<Value, Value>>* keyed, bool reverse) {
  Status error;
  std::stable_sort(keyed->begin(), keyed->end(), [&](const auto& a, const auto& b) {
    Result<bool> less = reverse ? PyLess(b.first, a.first) : PyLess(a.first, b.first);
    if (!less.ok()) {
      if (error.ok()) error = less.status();
      return false;
    }
    return *less;
  });
  return error;
}

// Python's int(str, base): whitespace around, a sign, digits with single underscores.
bool ParsePyInt(std::string s, int64_t base, int64_t* out) {
  s = PyStrip(s, nullptr, StripSide::kBoth);
  std::string digits;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_' && i > 0 && i + 1 < s.size() && s[i - 1] != '_' && s[i - 1] != '-' &&
        s[i - 1] != '+') {
      continue;
    }
    digits.push_back(s[i]);
  }
  if (digits.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(digits.c_str(), &end, static_cast<int>(base));
  if (errno != 0 || end != digits.c_str() + digits.size()) return false;
  if (!std::isalnum(static_cast<unsigned char>(digits.back()))) return false;
  *out = v;
  return true;
}

// Python's float(str): whitespace around, underscores between digits, inf / nan words.
bool ParsePyFloat(std::string s, double* out) {
  s = PyStrip(s, nullptr, StripSide::kBoth);
  std::string text;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_' && i > 0 && i + 1 < s.size() &&
        std::isdigit(static_cast<unsigned char>(s[i - 1])) &&
        std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      continue;
    }
    text.push_back(s[i]);
  }
  if (text.empty()) return false;
  const std::string lower = PyLower(text);
  const std::string word = lower[0] == '+' || lower[0] == '-' ? lower.substr(1) : lower;
  if (word == "inf" || word == "infinity" || word == "nan") {
    const double v = word == "nan" ? std::nan("") : HUGE_VAL;
    *out = lower[0] == '-' ? -v : v;
    return true;
  }
  if (lower.find_first_not_of("0123456789+-.e") != std::string::npos) return false;
  char* end = nullptr;
  *out = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size();
}

// ---- the filters, alphabetically ----

Result<Value> FilterAbs(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'abs'", args, {}));
  (void)a;
  if (v.is_float()) return Value::Float(std::fabs(v.number_value()));
  if (v.is_integral()) {
    if (v.int_value() == INT64_MIN) return Status::InvalidArgument("integer overflow in abs()");
    return Value::Int(std::llabs(v.int_value()));
  }
  if (v.is_undefined()) return UndefinedError(v);
  return TypeError("bad operand type for abs(): '" + TypeName(v) + "'");
}

Result<Value> FilterAttr(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'attr'", args, {"name"}, 1));
  if (v.is_undefined()) return UndefinedError(v);
  const std::string name = PyStr(a.get(0));
  // Python attributes only, no item fallback: {'a': 1}|attr('a') is undefined.
  if (v.is_namespace()) {
    if (const Value* found = v.namespace_attrs().Find(name)) return *found;
  } else if (std::optional<Value> method = FindMethod(v, name)) {
    return *method;
  }
  return Value::Undefined("'" + ObjectTypeRepr(v) + "' has no attribute " + PyStrRepr(name));
}

Result<Value> FilterBatch(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a,
                       BoundArgs::Bind("filter 'batch'", args, {"linecount", "fill_with"}, 1));
  CKV_ASSIGN_OR_RETURN(int64_t n, IntArg("batch size", a.get(0)));
  if (n <= 0) return Status::InvalidArgument("batch size must be positive");
  CKV_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  ValueList batches;
  ValueList current;
  for (Value& item : items) {
    current.push_back(std::move(item));
    if (static_cast<int64_t>(current.size()) == n) {
      batches.push_back(Value::List(std::move(current)));
      current.clear();
    }
  }
  if (!current.empty()) {
    if (a.has(1) && !a.get(1).is_none()) {
      while (static_cast<int64_t>(current.size()) < n) current.push_back(a.get(1));
    }
    batches.push_back(Value::List(std::move(current)));
  }
  return Value::List(std::move(batches));
}

Result<Value> FilterCapitalize(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'capitalize'", args, {}));
  (void)a;
  return Value::String(PyCapitalize(PyStr(v)));
}

Result<Value> FilterCenter(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'center'", args, {"width"}));
  CKV_ASSIGN_OR_RETURN(int64_t width, IntArg("center width", a.get(0, Value::Int(80))));
  const std::string s = PyStr(v);
  const auto len = static_cast<int64_t>(CodePointCount(s));
  if (width <= len) return Value::String(s);
  if (static_cast<uint64_t>(width) > kMaxBuiltBytes) return TooLarge("center");
  const int64_t margin = width - len;
  const int64_t left = margin / 2 + (margin & width & 1);  // CPython's rounding
  return Value::String(std::string(static_cast<size_t>(left), ' ') + s +
                       std::string(static_cast<size_t>(margin - left), ' '));
}

Result<Value> FilterDefault(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a,
                       BoundArgs::Bind("filter 'default'", args, {"default_value", "boolean"}));
  const bool boolean = Truthy(a.get(1, Value::Bool(false)));
  if (v.is_undefined() || (boolean && !Truthy(v))) return a.get(0, Value::String(""));
  return v;
}

Result<Value> FilterDictSort(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(
      BoundArgs a, BoundArgs::Bind("filter 'dictsort'", args, {"case_sensitive", "by", "reverse"}));
  if (!v.is_dict()) return TypeError("dictsort: expected a mapping, got '" + TypeName(v) + "'");
  const std::string by = PyStr(a.get(1, Value::String("key")));
  if (by != "key" && by != "value") {
    return Status::InvalidArgument("You can only sort by either \"key\" or \"value\"");
  }
  const bool case_sensitive = Truthy(a.get(0, Value::Bool(false)));
  std::vector<std::pair<Value, Value>> keyed;
  for (const Dict::Item& item : v.dict().items()) {
    keyed.emplace_back(SortKey(by == "key" ? item.first : item.second, case_sensitive),
                       Value::Tuple({item.first, item.second}));
  }
  CKV_RETURN_IF_ERROR(StableSortByKey(&keyed, Truthy(a.get(2, Value::Bool(false)))));
  ValueList out;
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return Value::List(std::move(out));
}

Result<Value> FilterEscape(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'escape'", args, {}));
  (void)a;
  return Value::String(HtmlEscape(PyStr(v)));
}

Result<Value> FilterFirst(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'first'", args, {}));
  (void)a;
  CKV_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  if (items.empty()) return Value::Undefined("No first item, sequence was empty.");
  return items.front();
}

Result<Value> FilterFloat(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'float'", args, {"default"}));
  if (v.is_undefined()) return UndefinedError(v);
  if (v.is_number()) return Value::Float(v.number_value());
  double d = 0;
  if (v.is_string() && ParsePyFloat(v.str(), &d)) return Value::Float(d);
  return a.get(0, Value::Float(0.0));
}

Result<Value> FilterFormat(Renderer&, const Value& v, const CallArgs& args) {
  if (!args.positional.empty() && !args.keyword.empty()) {
    return Status::InvalidArgument(
        "can't handle positional and keyword arguments at the same time");
  }
  if (!args.keyword.empty()) {
    Dict dict;
    for (const auto& [k, val] : args.keyword) dict.Set(Value::String(k), val);
    return PercentFormat(PyStr(v), Value::FromDict(std::move(dict)));
  }
  return PercentFormat(PyStr(v), Value::Tuple(args.positional));
}

Result<Value> FilterIndent(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a,
                       BoundArgs::Bind("filter 'indent'", args, {"width", "first", "blank"}));
  if (v.is_undefined()) return UndefinedError(v);
  if (!v.is_string()) return TypeError("indent: expected a string, got '" + TypeName(v) + "'");
  const Value width = a.get(0, Value::Int(4));
  std::string indention;
  if (width.is_string()) {
    indention = width.str();
  } else {
    CKV_ASSIGN_OR_RETURN(int64_t n, IntArg("indent width", width));
    if (n > 0) {
      if (static_cast<uint64_t>(n) > 4096) return Status::InvalidArgument("indent width too large");
      indention.assign(static_cast<size_t>(n), ' ');
    }
  }
  // Jinja appends a newline first so that splitlines() keeps a trailing empty line.
  std::vector<std::string> lines = PySplitLines(v.str() + "\n", false);
  std::string out;
  if (Truthy(a.get(2, Value::Bool(false)))) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) out += "\n" + indention;
      out += lines[i];
    }
  } else {
    out = lines.empty() ? std::string() : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].empty()) out += indention;
      out += lines[i];
    }
  }
  if (Truthy(a.get(1, Value::Bool(false)))) out = indention + out;
  if (out.size() > kMaxBuiltBytes) return TooLarge("indent");
  return Value::String(std::move(out));
}

Result<Value> FilterInt(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'int'", args, {"default", "base"}));
  CKV_ASSIGN_OR_RETURN(int64_t base, IntArg("int base", a.get(1, Value::Int(10))));
  if (v.is_undefined()) return UndefinedError(v);
  if (v.is_integral()) return Value::Int(v.int_value());
  if (v.is_float() && std::isfinite(v.number_value()) && std::fabs(v.number_value()) < 9.2e18) {
    return Value::Int(static_cast<int64_t>(v.number_value()));
  }
  if (v.is_string()) {
    int64_t i = 0;
    if (base >= 2 && base <= 36 && ParsePyInt(v.str(), base, &i)) return Value::Int(i);
    // "42.23"|int is 42: Jinja retries through float.
    double d = 0;
    if (ParsePyFloat(v.str(), &d) && std::isfinite(d) && std::fabs(d) < 9.2e18) {
      return Value::Int(static_cast<int64_t>(d));
    }
  }
  return a.get(0, Value::Int(0));
}

Result<Value> FilterItems(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'items'", args, {}));
  (void)a;
  if (v.is_undefined()) return Value::List({});
  if (!v.is_dict()) return TypeError("Can only get item pairs from a mapping.");
  ValueList out;
  for (const Dict::Item& item : v.dict().items())
    out.push_back(Value::Tuple({item.first, item.second}));
  return Value::List(std::move(out));
}

Result<Value> FilterJoin(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'join'", args, {"d", "attribute"}));
  const std::string sep = PyStr(a.get(0, Value::String("")));
  const Value attribute = a.get(1, Value::None());
  CKV_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += sep;
    Value item = items[i];
    if (!attribute.is_none()) {
      CKV_ASSIGN_OR_RETURN(item, AttributePath(item, attribute));
    }
    AppendPyStr(item, &out);
    if (out.size() > kMaxBuiltBytes) return TooLarge("join");
  }
  return Value::String(std::move(out));
}

Result<Value> FilterLast(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'last'", args, {}));
  (void)a;
  CKV_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  if (items.empty()) return Value::Undefined("No last item, sequence was empty.");
  return items.back();
}

Result<Value> FilterLength(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'length'", args, {}));
  (void)a;
  CKV_ASSIGN_OR_RETURN(int64_t n, Length(v));
  return Value::Int(n);
}

Result<Value> FilterList(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'list'", args, {}));
  (void)a;
  CKV_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  return Value::List(std::move(items));
}

Result<Value> FilterLower(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'lower'", args, {}));
  (void)a;
  return Value::String(PyLower(PyStr(v)));
}

Result<Value> FilterMap(Renderer& r, const Value& v, const CallArgs& args) {
  if (!Truthy(v)) return Value::List({});
  CKV_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  ValueList out;
  out.reserve(items.size());
  if (args.positional.empty()) {
    // map(attribute='x', default=...)
    CKV_ASSIGN_OR_RETURN(BoundArgs a,
                         BoundArgs::Bind("filter 'map'", args, {"attribute", "default"}, 1));
    for (const Value& item : items) {
      CKV_ASSIGN_OR_RETURN(Value mapped, AttributePath(item, a.get(0)));
      if (mapped.is_undefined() && a.has(1) && !a.get(1).is_none()) mapped = a.get(1);
      out.push_back(std::move(mapped));
    }
    return Value::List(std::move(out));
  }
  // map('filter', args...)
  CKV_ASSIGN_OR_RETURN(std::string name, StrArg("map filter name", args.positional[0]));
  const FilterDef* def = FindFilter(name);
  if (def == nullptr) return Status::Unsupported("map: no filter named '" + name + "'");
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keyword = args.keyword;
  for (const Value& item : items) {
    CKV_ASSIGN_OR_RETURN(Value mapped, def->fn(r, item, rest));
    out.push_back(std::move(mapped));
  }
  return Value::List(std::move(out));
}

Result<Value> MinMax(const Value& v, const CallArgs& args, bool max) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(max ? "filter 'max'" : "filter 'min'", args,
                                                    {"case_sensitive", "attribute"}));
  CKV_ASSIGN_OR_RETURN(auto keyed,
                       Keyed(v, a.get(1, Value::None()), Truthy(a.get(0, Value::Bool(false)))));
  if (keyed.empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  for (size_t i = 1; i < keyed.size(); ++i) {
    CKV_ASSIGN_OR_RETURN(bool better, max ? PyLess(keyed[best].first, keyed[i].first)
                                          : PyLess(keyed[i].first, keyed[best].first));
    if (better) best = i;
  }
  return keyed[best].second;
}

Result<Value> FilterMax(Renderer&, const Value& v, const CallArgs& args) {
  return MinMax(v, args, true);
}
Result<Value> FilterMin(Renderer&, const Value& v, const CallArgs& args) {
  return MinMax(v, args, false);
}

// select / reject / selectattr / rejectattr: Jinja's select_or_reject.
Result<Value> SelectOrReject(Renderer& r, const Value& v, const CallArgs& args, bool select,
                             bool by_attribute) {
  if (!Truthy(v)) return Value::List({});
  size_t next = 0;
  Value attribute;
  if (by_attribute) {
    if (args.positional.empty())
      return Status::InvalidArgument("Missing parameter for attribute name");
    attribute = args.positional[next++];
  }
  const TestDef* test = nullptr;
  CallArgs test_args;
  if (next < args.positional.size()) {
    CKV_ASSIGN_OR_RETURN(std::string name, StrArg("test name", args.positional[next]));
    test = FindTest(name);
    if (test == nullptr) return Status::Unsupported("no test named '" + name + "'");
    test_args.positional.assign(args.positional.begin() + static_cast<ptrdiff_t>(next) + 1,
                                args.positional.end());
    test_args.keyword = args.keyword;
  }
  CKV_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  ValueList out;
  for (Value& item : items) {
    Value subject = item;
    if (by_attribute) {
      CKV_ASSIGN_OR_RETURN(subject, AttributePath(item, attribute));
    }
    bool pass = Truthy(subject);
    if (test != nullptr) {
      CKV_ASSIGN_OR_RETURN(pass, test->fn(r, subject, test_args));
    }
    if (pass == select) out.push_back(std::move(item));
  }
  return Value::List(std::move(out));
}

Result<Value> FilterSelect(Renderer& r, const Value& v, const CallArgs& args) {
  return SelectOrReject(r, v, args, true, false);
}
Result<Value> FilterReject(Renderer& r, const Value& v, const CallArgs& args) {
  return SelectOrReject(r, v, args, false, false);
}
Result<Value> FilterSelectAttr(Renderer& r, const Value& v, const CallArgs& args) {
  return SelectOrReject(r, v, args, true, true);
}
Result<Value> FilterRejectAttr(Renderer& r, const Value& v, const CallArgs& args) {
  return SelectOrReject(r, v, args, false, true);
}

Result<Value> FilterReplace(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a,
                       BoundArgs::Bind("filter 'replace'", args, {"old", "new", "count"}, 2));
  int64_t count = -1;
  if (a.has(2) && !a.get(2).is_none()) {
    CKV_ASSIGN_OR_RETURN(count, IntArg("replace count", a.get(2)));
  }
  std::string out = PyReplace(PyStr(v), PyStr(a.get(0)), PyStr(a.get(1)), count);
  if (out.size() > kMaxBuiltBytes) return TooLarge("replace");
  return Value::String(std::move(out));
}

Result<Value> FilterReverse(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'reverse'", args, {}));
  (void)a;
  if (v.is_string()) {
    std::u32string cps = DecodeUtf8(v.str());
    std::reverse(cps.begin(), cps.end());
    return Value::String(EncodeUtf8(cps));
  }
  CKV_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  std::reverse(items.begin(), items.end());
  return Value::List(std::move(items));
}

// Python's round(x, n) for floats: correctly rounded on the exact binary value, ties to
// even; printf's %.*f does the same.
double PyRoundFloat(double x, int64_t digits) {
  if (!std::isfinite(x)) return x;
  if (digits >= 0) {
    if (digits > 300) return x;
    char buf[512];
    std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(digits), x);
    return std::strtod(buf, nullptr);
  }
  const double scale = std::pow(10.0, static_cast<double>(-digits));
  return std::nearbyint(x / scale) * scale;
}

Result<Value> FilterRound(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a,
                       BoundArgs::Bind("filter 'round'", args, {"precision", "method"}));
  CKV_ASSIGN_OR_RETURN(int64_t precision, IntArg("round precision", a.get(0, Value::Int(0))));
  const std::string method = PyStr(a.get(1, Value::String("common")));
  if (method != "common" && method != "ceil" && method != "floor") {
    return Status::InvalidArgument("method must be common, ceil or floor");
  }
  if (v.is_undefined()) return UndefinedError(v);
  if (!v.is_number()) return TypeError("type " + TypeName(v) + " doesn't define __round__ method");
  if (method == "common") {
    if (v.is_integral()) {
      if (precision >= 0) return Value::Int(v.int_value());
      return Value::Int(static_cast<int64_t>(PyRoundFloat(v.number_value(), precision)));
    }
    return Value::Float(PyRoundFloat(v.number_value(), precision));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double scaled = v.number_value() * scale;
  return Value::Float((method == "ceil" ? std::ceil(scaled) : std::floor(scaled)) / scale);
}

Result<Value> FilterSafe(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'safe'", args, {}));
  (void)a;
  return v;  // no autoescaping in chat templates: safe changes nothing
}

Result<Value> FilterSort(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'sort'", args,
                                                    {"reverse", "case_sensitive", "attribute"}));
  CKV_ASSIGN_OR_RETURN(auto keyed,
                       Keyed(v, a.get(2, Value::None()), Truthy(a.get(1, Value::Bool(false)))));
  CKV_RETURN_IF_ERROR(StableSortByKey(&keyed, Truthy(a.get(0, Value::Bool(false)))));
  ValueList out;
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return Value::List(std::move(out));
}

Result<Value> FilterString(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'string'", args, {}));
  (void)a;
  return Value::String(PyStr(v));
}

Result<Value> FilterSum(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'sum'", args, {"attribute", "start"}));
  Value total = a.get(1, Value::Int(0));
  const Value attribute = a.get(0, Value::None());
  CKV_ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  for (const Value& item : items) {
    Value x = item;
    if (!attribute.is_none()) {
      CKV_ASSIGN_OR_RETURN(x, AttributePath(item, attribute));
    }
    CKV_ASSIGN_OR_RETURN(total, ApplyBinary(BinaryOp::kAdd, total, x));
  }
  return total;
}

Result<Value> FilterTitle(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'title'", args, {}));
  (void)a;
  return Value::String(JinjaTitle(PyStr(v)));
}

Result<Value> FilterToJson(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a,
                       BoundArgs::Bind("filter 'tojson'", args,
                                       {"ensure_ascii", "indent", "separators", "sort_keys"}));
  JsonDumpOptions options;
  options.ensure_ascii = Truthy(a.get(0, Value::Bool(false)));
  options.sort_keys = Truthy(a.get(3, Value::Bool(false)));
  const Value indent = a.get(1, Value::None());
  if (indent.is_string()) {
    options.indent = indent.str();
  } else if (!indent.is_none()) {
    CKV_ASSIGN_OR_RETURN(int64_t n, IntArg("tojson indent", indent));
    if (n > 4096) return Status::InvalidArgument("tojson indent too large");
    options.indent = std::string(static_cast<size_t>(std::max<int64_t>(n, 0)), ' ');
  }
  if (options.indent) options.item_separator = ",";
  const Value separators = a.get(2, Value::None());
  if (!separators.is_none()) {
    if (!separators.is_sequence() || separators.items().size() != 2 ||
        !separators.items()[0].is_string() || !separators.items()[1].is_string()) {
      return TypeError("tojson separators must be a pair of strings");
    }
    options.item_separator = separators.items()[0].str();
    options.key_separator = separators.items()[1].str();
  }
  CKV_ASSIGN_OR_RETURN(std::string text, ToJson(v, options));
  if (text.size() > kMaxBuiltBytes) return TooLarge("tojson");
  return Value::String(std::move(text));
}

Result<Value> FilterTrim(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'trim'", args, {"chars"}));
  const Value chars = a.get(0, Value::None());
  if (chars.is_none()) return Value::String(PyStrip(PyStr(v), nullptr, StripSide::kBoth));
  CKV_ASSIGN_OR_RETURN(std::string set, StrArg("trim chars", chars));
  return Value::String(PyStrip(PyStr(v), &set, StripSide::kBoth));
}

Result<Value> FilterUnique(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a,
                       BoundArgs::Bind("filter 'unique'", args, {"case_sensitive", "attribute"}));
  CKV_ASSIGN_OR_RETURN(auto keyed,
                       Keyed(v, a.get(1, Value::None()), Truthy(a.get(0, Value::Bool(false)))));
  ValueList seen;
  ValueList out;
  for (auto& [key, item] : keyed) {
    CKV_RETURN_IF_ERROR(CheckHashable(key));
    bool dup = false;
    for (const Value& s : seen) {
      if (PyEquals(s, key)) {
        dup = true;
        break;
      }
    }
    if (dup) continue;
    seen.push_back(key);
    out.push_back(std::move(item));
  }
  return Value::List(std::move(out));
}

Result<Value> FilterUpper(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'upper'", args, {}));
  (void)a;
  return Value::String(PyUpper(PyStr(v)));
}

Result<Value> FilterWordCount(Renderer&, const Value& v, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("filter 'wordcount'", args, {}));
  (void)a;
  int64_t words = 0;
  bool in_word = false;
  for (char32_t c : DecodeUtf8(PyStr(v))) {
    // Python's \w: letters, digits and the underscore, in any script.
    const bool word_char =
        c == '_' || PyIsClass(EncodeUtf8(std::u32string(1, c)), CharClass::kAlnum);
    if (word_char && !in_word) ++words;
    in_word = word_char;
  }
  return Value::Int(words);
}

constexpr FilterDef kFilters[] = {
    {"abs", FilterAbs},
    {"attr", FilterAttr},
    {"batch", FilterBatch},
    {"capitalize", FilterCapitalize},
    {"center", FilterCenter},
    {"count", FilterLength},
    {"d", FilterDefault},
    {"default", FilterDefault},
    {"dictsort", FilterDictSort},
    {"e", FilterEscape},
    {"escape", FilterEscape},
    {"first", FilterFirst},
    {"float", FilterFloat},
    {"format", FilterFormat},
    {"indent", FilterIndent},
    {"int", FilterInt},
    {"items", FilterItems},
    {"join", FilterJoin},
    {"last", FilterLast},
    {"length", FilterLength},
    {"list", FilterList},
    {"lower", FilterLower},
    {"map", FilterMap},
    {"max", FilterMax},
    {"min", FilterMin},
    {"reject", FilterReject},
    {"rejectattr", FilterRejectAttr},
    {"replace", FilterReplace},
    {"reverse", FilterReverse},
    {"round", FilterRound},
    {"safe", FilterSafe},
    {"select", FilterSelect},
    {"selectattr", FilterSelectAttr},
    {"sort", FilterSort},
    {"string", FilterString},
    {"sum", FilterSum},
    {"title", FilterTitle},
    {"tojson", FilterToJson},
    {"trim", FilterTrim},
    {"unique", FilterUnique},
    {"upper", FilterUpper},
    {"wordcount", FilterWordCount},
};

constexpr std::string_view kUnsupportedFilters[] = {
    "filesizeformat", "forceescape", "groupby",   "pprint", "random",   "slice",
    "striptags",      "truncate",    "urlencode", "urlize", "wordwrap", "xmlattr",
};

}  // namespace

const FilterDef* FindFilter(std::string_view name) {
  for (const FilterDef& def : kFilters) {
    if (def.name == name) return &def;
  }
  return nullptr;
}

bool IsUnsupportedJinjaFilter(std::string_view name) {
  return std::find(std::begin(kUnsupportedFilters), std::end(kUnsupportedFilters), name) !=
         std::end(kUnsupportedFilters);
}

}  // namespace ckv::jinja
