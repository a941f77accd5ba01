// The method tables of str, dict, list and tuple as the immutable sandbox exposes them:
// `content.strip()`, `message.get('name')`, `'{} items'.format(n)`. Python methods we do not
// implement fail when called, naming the method; the mutating ones (list.append, dict.update)
// are unsafe in the sandbox and read as an undefined value that fails when used, as in
// Hugging Face.
#include <algorithm>
#include <string>
#include <vector>

#include "chat/jinja_args.h"
#include "chat/jinja_builtins.h"
#include "chat/jinja_format.h"
#include "chat/jinja_ops.h"
#include "chat/jinja_text.h"

namespace ckv::jinja {
namespace {

using MethodFn = Result<Value> (*)(const Value& self, const CallArgs& args);

struct MethodDef {
  std::string_view name;
  MethodFn fn;  // null: a Python method we do not implement
};

class BoundMethod final : public Callable {
 public:
  BoundMethod(Value self, const MethodDef* def) : self_(std::move(self)), def_(def) {}
  std::string Repr() const override {
    return "<built-in method " + std::string(def_->name) + " of " + TypeName(self_) + " object>";
  }
  Result<Value> Call(Renderer&, CallArgs args) const override {
    if (def_->fn == nullptr) {
      return Status::Unsupported("unsupported method '" + TypeName(self_) + "." +
                                 std::string(def_->name) + "'");
    }
    return def_->fn(self_, args);
  }

 private:
  Value self_;
  const MethodDef* def_;
};

std::string What(std::string_view method) {
  return "str." + std::string(method) + "()";
}

Status TooLarge() {
  return Status::OutOfRange("string method result larger than " +
                            std::to_string(kMaxBuiltBytes >> 20) + " MiB");
}

// ---- str ----

#define CKV_STR_TRANSFORM(fn_name, method, transform)                           \
  Result<Value> fn_name(const Value& self, const CallArgs& args) {              \
    CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(What(method), args, {})); \
    (void)a;                                                                    \
    return Value::String(transform(self.str()));                                \
  }

CKV_STR_TRANSFORM(StrUpper, "upper", PyUpper)
CKV_STR_TRANSFORM(StrLower, "lower", PyLower)
CKV_STR_TRANSFORM(StrTitle, "title", PyTitle)
CKV_STR_TRANSFORM(StrCapitalize, "capitalize", PyCapitalize)
CKV_STR_TRANSFORM(StrSwapCase, "swapcase", PySwapCase)

#undef CKV_STR_TRANSFORM

#define CKV_STR_CLASS(fn_name, method, cls)                                     \
  Result<Value> fn_name(const Value& self, const CallArgs& args) {              \
    CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(What(method), args, {})); \
    (void)a;                                                                    \
    return Value::Bool(PyIsClass(self.str(), cls));                             \
  }

CKV_STR_CLASS(StrIsDigit, "isdigit", CharClass::kDigit)
CKV_STR_CLASS(StrIsAlpha, "isalpha", CharClass::kAlpha)
CKV_STR_CLASS(StrIsAlnum, "isalnum", CharClass::kAlnum)
CKV_STR_CLASS(StrIsSpace, "isspace", CharClass::kSpace)
CKV_STR_CLASS(StrIsLower, "islower", CharClass::kLower)
CKV_STR_CLASS(StrIsUpper, "isupper", CharClass::kUpper)

#undef CKV_STR_CLASS

Result<Value> StrIsAscii(const Value& self, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(What("isascii"), args, {}));
  (void)a;
  return Value::Bool(IsAscii(self.str()));
}

Result<Value> Strip(const Value& self, const CallArgs& args, std::string_view method,
                    StripSide side) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(What(method), args, {"chars"}));
  const Value chars = a.get(0, Value::None());
  if (chars.is_none()) return Value::String(PyStrip(self.str(), nullptr, side));
  CKV_ASSIGN_OR_RETURN(std::string set, StrArg(What(method) + " chars", chars));
  return Value::String(PyStrip(self.str(), &set, side));
}

Result<Value> StrStrip(const Value& self, const CallArgs& args) {
  return Strip(self, args, "strip", StripSide::kBoth);
}
Result<Value> StrLStrip(const Value& self, const CallArgs& args) {
  return Strip(self, args, "lstrip", StripSide::kLeft);
}
Result<Value> StrRStrip(const Value& self, const CallArgs& args) {
  return Strip(self, args, "rstrip", StripSide::kRight);
}

ValueList Strings(std::vector<std::string> parts) {
  ValueList out;
  out.reserve(parts.size());
  for (std::string& p : parts) out.push_back(Value::String(std::move(p)));
  return out;
}

// str.split / str.rsplit.
Result<Value> Split(const Value& self, const CallArgs& args, bool from_right) {
  const std::string method = from_right ? "rsplit" : "split";
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(What(method), args, {"sep", "maxsplit"}));
  CKV_ASSIGN_OR_RETURN(int64_t maxsplit,
                       IntArg(What(method) + " maxsplit", a.get(1, Value::Int(-1))));
  const Value sep = a.get(0, Value::None());
  const std::string& s = self.str();
  std::vector<std::string> parts;
  if (sep.is_none()) {
    // Runs of whitespace separate; none at the ends; the rest keeps its inner whitespace.
    const std::u32string cps = DecodeUtf8(s);
    if (!from_right) {
      size_t i = 0;
      while (true) {
        while (i < cps.size() && IsPyWhitespace(cps[i])) ++i;
        if (i == cps.size()) break;
        if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
          parts.push_back(EncodeUtf8(cps.substr(i)));
          break;
        }
        size_t j = i;
        while (j < cps.size() && !IsPyWhitespace(cps[j])) ++j;
        parts.push_back(EncodeUtf8(cps.substr(i, j - i)));
        i = j;
      }
    } else {
      size_t i = cps.size();
      while (true) {
        while (i > 0 && IsPyWhitespace(cps[i - 1])) --i;
        if (i == 0) break;
        if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
          parts.push_back(EncodeUtf8(cps.substr(0, i)));
          break;
        }
        size_t j = i;
        while (j > 0 && !IsPyWhitespace(cps[j - 1])) --j;
        parts.push_back(EncodeUtf8(cps.substr(j, i - j)));
        i = j;
      }
      std::reverse(parts.begin(), parts.end());
    }
    return Value::List(Strings(std::move(parts)));
  }
  CKV_ASSIGN_OR_RETURN(std::string delim, StrArg(What(method) + " sep", sep));
  if (delim.empty()) return Status::InvalidArgument("empty separator");
  if (!from_right) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      const size_t hit = s.find(delim, pos);
      if (hit == std::string::npos) break;
      parts.push_back(s.substr(pos, hit - pos));
      pos = hit + delim.size();
    }
    parts.push_back(s.substr(pos));
  } else {
    size_t end = s.size();
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      if (end < delim.size()) break;
      const size_t hit = s.rfind(delim, end - delim.size());
      if (hit == std::string::npos) break;
      parts.push_back(s.substr(hit + delim.size(), end - hit - delim.size()));
      end = hit;
    }
    parts.push_back(s.substr(0, end));
    std::reverse(parts.begin(), parts.end());
  }
  return Value::List(Strings(std::move(parts)));
}

Result<Value> StrSplit(const Value& self, const CallArgs& args) {
  return Split(self, args, false);
}
Result<Value> StrRSplit(const Value& self, const CallArgs& args) {
  return Split(self, args, true);
}

Result<Value> StrSplitLines(const Value& self, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(What("splitlines"), args, {"keepends"}));
  return Value::List(Strings(PySplitLines(self.str(), Truthy(a.get(0, Value::Bool(false))))));
}

// Python's s[start:end] for the search methods (find, count, startswith): the text and the
// code-point index where it starts; `valid` false when Python answers "not found" outright.
struct Window {
  std::string text;
  int64_t offset = 0;
  bool valid = true;
};

Result<Window> SearchWindow(const std::string& s, const Value& start, const Value& end) {
  Window w;
  const bool has_start = !start.is_none() && !start.is_undefined();
  const bool has_end = !end.is_none() && !end.is_undefined();
  if (!has_start && !has_end) {
    w.text = s;
    return w;
  }
  const std::u32string cps = DecodeUtf8(s);
  const auto len = static_cast<int64_t>(cps.size());
  int64_t b = 0;
  int64_t e = len;
  if (has_start) {
    CKV_ASSIGN_OR_RETURN(b, IntArg("start", start));
    if (b < 0) b = std::max<int64_t>(b + len, 0);
  }
  if (has_end) {
    CKV_ASSIGN_OR_RETURN(e, IntArg("end", end));
    if (e > len) {
      e = len;
    } else if (e < 0) {
      e = std::max<int64_t>(e + len, 0);
    }
  }
  if (e < b) {
    w.valid = false;
    return w;
  }
  w.text = EncodeUtf8(cps.substr(static_cast<size_t>(b), static_cast<size_t>(e - b)));
  w.offset = b;
  return w;
}

int64_t CodePointIndex(const std::string& s, size_t byte_pos) {
  return static_cast<int64_t>(CodePointCount(std::string_view(s).substr(0, byte_pos)));
}

// startswith / endswith: a prefix or a tuple of them.
Result<Value> AffixMatch(const Value& self, const CallArgs& args, bool prefix) {
  const std::string method = prefix ? "startswith" : "endswith";
  CKV_ASSIGN_OR_RETURN(BoundArgs a,
                       BoundArgs::Bind(What(method), args, {"affix", "start", "end"}, 1));
  CKV_ASSIGN_OR_RETURN(Window w,
                       SearchWindow(self.str(), a.get(1, Value::None()), a.get(2, Value::None())));
  ValueList candidates;
  const Value affix = a.get(0);
  if (affix.kind() == Value::Kind::kTuple) {
    candidates = affix.items();
  } else {
    candidates.push_back(affix);
  }
  for (const Value& c : candidates) {
    if (!c.is_string()) {
      return TypeError(method + " first arg must be str or a tuple of str, not " + TypeName(c));
    }
    if (!w.valid) continue;
    const std::string& t = c.str();
    if (t.size() > w.text.size()) continue;
    if (prefix ? w.text.compare(0, t.size(), t) == 0
               : w.text.compare(w.text.size() - t.size(), t.size(), t) == 0) {
      return Value::Bool(true);
    }
  }
  return Value::Bool(false);
}

Result<Value> StrStartsWith(const Value& self, const CallArgs& args) {
  return AffixMatch(self, args, true);
}
Result<Value> StrEndsWith(const Value& self, const CallArgs& args) {
  return AffixMatch(self, args, false);
}

// find / rfind / index / rindex.
Result<Value> Find(const Value& self, const CallArgs& args, std::string_view method,
                   bool from_right, bool raise) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a,
                       BoundArgs::Bind(What(method), args, {"sub", "start", "end"}, 1));
  CKV_ASSIGN_OR_RETURN(std::string sub, StrArg(What(method) + " sub", a.get(0)));
  CKV_ASSIGN_OR_RETURN(Window w,
                       SearchWindow(self.str(), a.get(1, Value::None()), a.get(2, Value::None())));
  size_t hit = std::string::npos;
  if (w.valid) hit = from_right ? w.text.rfind(sub) : w.text.find(sub);
  if (hit == std::string::npos) {
    if (raise) return Status::InvalidArgument("substring not found");
    return Value::Int(-1);
  }
  return Value::Int(w.offset + CodePointIndex(w.text, hit));
}

Result<Value> StrFind(const Value& self, const CallArgs& args) {
  return Find(self, args, "find", false, false);
}
Result<Value> StrRFind(const Value& self, const CallArgs& args) {
  return Find(self, args, "rfind", true, false);
}
Result<Value> StrIndex(const Value& self, const CallArgs& args) {
  return Find(self, args, "index", false, true);
}
Result<Value> StrRIndex(const Value& self, const CallArgs& args) {
  return Find(self, args, "rindex", true, true);
}

Result<Value> StrCount(const Value& self, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a,
                       BoundArgs::Bind(What("count"), args, {"sub", "start", "end"}, 1));
  CKV_ASSIGN_OR_RETURN(std::string sub, StrArg(What("count") + " sub", a.get(0)));
  CKV_ASSIGN_OR_RETURN(Window w,
                       SearchWindow(self.str(), a.get(1, Value::None()), a.get(2, Value::None())));
  if (!w.valid) return Value::Int(0);
  if (sub.empty()) return Value::Int(static_cast<int64_t>(CodePointCount(w.text)) + 1);
  int64_t n = 0;
  for (size_t pos = w.text.find(sub); pos != std::string::npos;
       pos = w.text.find(sub, pos + sub.size())) {
    ++n;
  }
  return Value::Int(n);
}

Result<Value> StrReplace(const Value& self, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a,
                       BoundArgs::Bind(What("replace"), args, {"old", "new", "count"}, 2));
  CKV_ASSIGN_OR_RETURN(std::string old_text, StrArg(What("replace") + " old", a.get(0)));
  CKV_ASSIGN_OR_RETURN(std::string new_text, StrArg(What("replace") + " new", a.get(1)));
  CKV_ASSIGN_OR_RETURN(int64_t count, IntArg(What("replace") + " count", a.get(2, Value::Int(-1))));
  std::string out = PyReplace(self.str(), old_text, new_text, count);
  if (out.size() > kMaxBuiltBytes) return TooLarge();
  return Value::String(std::move(out));
}

Result<Value> StrJoin(const Value& self, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(What("join"), args, {"iterable"}, 1));
  CKV_ASSIGN_OR_RETURN(ValueList items, Iterate(a.get(0)));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].is_string()) {
      return TypeError("sequence item " + std::to_string(i) + ": expected str instance, " +
                       TypeName(items[i]) + " found");
    }
    if (i > 0) out += self.str();
    out += items[i].str();
    if (out.size() > kMaxBuiltBytes) return TooLarge();
  }
  return Value::String(std::move(out));
}

// ljust / rjust / center / zfill.
Result<Value> Pad(const Value& self, const CallArgs& args, std::string_view method) {
  const bool zfill = method == "zfill";
  CKV_ASSIGN_OR_RETURN(BoundArgs a,
                       zfill ? BoundArgs::Bind(What(method), args, {"width"}, 1)
                             : BoundArgs::Bind(What(method), args, {"width", "fillchar"}, 1));
  CKV_ASSIGN_OR_RETURN(int64_t width, IntArg(What(method) + " width", a.get(0)));
  std::string fill = " ";
  if (!zfill && a.has(1)) {
    CKV_ASSIGN_OR_RETURN(fill, StrArg(What(method) + " fillchar", a.get(1)));
    if (CodePointCount(fill) != 1) {
      return TypeError("The fill character must be exactly one character long");
    }
  }
  const std::string& s = self.str();
  const auto len = static_cast<int64_t>(CodePointCount(s));
  if (width <= len) return self;
  if (static_cast<uint64_t>(width) > kMaxBuiltBytes / 4) return TooLarge();
  const int64_t margin = width - len;
  auto repeat = [&](int64_t n) {
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += fill;
    return out;
  };
  if (method == "ljust") return Value::String(s + repeat(margin));
  if (method == "rjust") return Value::String(repeat(margin) + s);
  if (zfill) {
    fill = "0";
    if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
      return Value::String(s.substr(0, 1) + repeat(margin) + s.substr(1));
    }
    return Value::String(repeat(margin) + s);
  }
  const int64_t left = margin / 2 + (margin & width & 1);  // CPython's rounding
  return Value::String(repeat(left) + s + repeat(margin - left));
}

Result<Value> StrLJust(const Value& self, const CallArgs& args) {
  return Pad(self, args, "ljust");
}
Result<Value> StrRJust(const Value& self, const CallArgs& args) {
  return Pad(self, args, "rjust");
}
Result<Value> StrCenter(const Value& self, const CallArgs& args) {
  return Pad(self, args, "center");
}
Result<Value> StrZFill(const Value& self, const CallArgs& args) {
  return Pad(self, args, "zfill");
}

Result<Value> RemoveAffix(const Value& self, const CallArgs& args, bool prefix) {
  const std::string method = prefix ? "removeprefix" : "removesuffix";
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(What(method), args, {"affix"}, 1));
  CKV_ASSIGN_OR_RETURN(std::string affix, StrArg(What(method) + " argument", a.get(0)));
  const std::string& s = self.str();
  if (affix.size() <= s.size()) {
    if (prefix && s.compare(0, affix.size(), affix) == 0)
      return Value::String(s.substr(affix.size()));
    if (!prefix && s.compare(s.size() - affix.size(), affix.size(), affix) == 0) {
      return Value::String(s.substr(0, s.size() - affix.size()));
    }
  }
  return self;
}

Result<Value> StrRemovePrefix(const Value& self, const CallArgs& args) {
  return RemoveAffix(self, args, true);
}
Result<Value> StrRemoveSuffix(const Value& self, const CallArgs& args) {
  return RemoveAffix(self, args, false);
}

Result<Value> Partition(const Value& self, const CallArgs& args, bool from_right) {
  const std::string method = from_right ? "rpartition" : "partition";
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind(What(method), args, {"sep"}, 1));
  CKV_ASSIGN_OR_RETURN(std::string sep, StrArg(What(method) + " sep", a.get(0)));
  if (sep.empty()) return Status::InvalidArgument("empty separator");
  const std::string& s = self.str();
  const size_t hit = from_right ? s.rfind(sep) : s.find(sep);
  if (hit == std::string::npos) {
    return from_right ? Value::Tuple({Value::String(""), Value::String(""), self})
                      : Value::Tuple({self, Value::String(""), Value::String("")});
  }
  return Value::Tuple({Value::String(s.substr(0, hit)), Value::String(sep),
                       Value::String(s.substr(hit + sep.size()))});
}

Result<Value> StrPartition(const Value& self, const CallArgs& args) {
  return Partition(self, args, false);
}
Result<Value> StrRPartition(const Value& self, const CallArgs& args) {
  return Partition(self, args, true);
}

Result<Value> StrFormatMethod(const Value& self, const CallArgs& args) {
  return StrFormat(self.str(), args);
}

// ---- dict ----

Result<Value> DictItems(const Value& self, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("dict.items()", args, {}));
  (void)a;
  ValueList out;
  for (const Dict::Item& item : self.dict().items()) {
    out.push_back(Value::Tuple({item.first, item.second}));
  }
  return Value::List(std::move(out));
}

Result<Value> DictKeys(const Value& self, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("dict.keys()", args, {}));
  (void)a;
  ValueList out;
  for (const Dict::Item& item : self.dict().items()) out.push_back(item.first);
  return Value::List(std::move(out));
}

Result<Value> DictValues(const Value& self, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("dict.values()", args, {}));
  (void)a;
  ValueList out;
  for (const Dict::Item& item : self.dict().items()) out.push_back(item.second);
  return Value::List(std::move(out));
}

Result<Value> DictGet(const Value& self, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("dict.get()", args, {"key", "default"}, 1));
  CKV_RETURN_IF_ERROR(CheckHashable(a.get(0)));
  const Value* found = self.dict().Find(a.get(0));
  return found != nullptr ? *found : a.get(1, Value::None());
}

// Containers are immutable during a render, so a copy can be the object itself.
Result<Value> SelfCopy(const Value& self, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("copy()", args, {}));
  (void)a;
  return self;
}

// ---- list / tuple ----

Result<Value> SeqCount(const Value& self, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a,
                       BoundArgs::Bind(TypeName(self) + ".count()", args, {"value"}, 1));
  int64_t n = 0;
  for (const Value& v : self.items()) n += PyEquals(v, a.get(0)) ? 1 : 0;
  return Value::Int(n);
}

Result<Value> SeqIndex(const Value& self, const CallArgs& args) {
  CKV_ASSIGN_OR_RETURN(BoundArgs a,
                       BoundArgs::Bind(TypeName(self) + ".index()", args, {"value"}, 1));
  const ValueList& items = self.items();
  for (size_t i = 0; i < items.size(); ++i) {
    if (PyEquals(items[i], a.get(0))) return Value::Int(static_cast<int64_t>(i));
  }
  return Status::InvalidArgument(PyRepr(a.get(0)) + " is not in " + TypeName(self));
}

constexpr MethodDef kStrMethods[] = {
    {"capitalize", StrCapitalize},
    {"casefold", nullptr},
    {"center", StrCenter},
    {"count", StrCount},
    {"encode", nullptr},
    {"endswith", StrEndsWith},
    {"expandtabs", nullptr},
    {"find", StrFind},
    {"format", StrFormatMethod},
    {"format_map", nullptr},
    {"index", StrIndex},
    {"isalnum", StrIsAlnum},
    {"isalpha", StrIsAlpha},
    {"isascii", StrIsAscii},
    {"isdecimal", nullptr},
    {"isdigit", StrIsDigit},
    {"isidentifier", nullptr},
    {"islower", StrIsLower},
    {"isnumeric", nullptr},
    {"isprintable", nullptr},
    {"isspace", StrIsSpace},
    {"istitle", nullptr},
    {"isupper", StrIsUpper},
    {"join", StrJoin},
    {"ljust", StrLJust},
    {"lower", StrLower},
    {"lstrip", StrLStrip},
    {"maketrans", nullptr},
    {"partition", StrPartition},
    {"removeprefix", StrRemovePrefix},
    {"removesuffix", StrRemoveSuffix},
    {"replace", StrReplace},
    {"rfind", StrRFind},
    {"rindex", StrRIndex},
    {"rjust", StrRJust},
    {"rpartition", StrRPartition},
    {"rsplit", StrRSplit},
    {"rstrip", StrRStrip},
    {"split", StrSplit},
    {"splitlines", StrSplitLines},
    {"startswith", StrStartsWith},
    {"strip", StrStrip},
    {"swapcase", StrSwapCase},
    {"title", StrTitle},
    {"translate", nullptr},
    {"upper", StrUpper},
    {"zfill", StrZFill},
};

constexpr MethodDef kDictMethods[] = {
    {"copy", SelfCopy},   {"fromkeys", nullptr}, {"get", DictGet},
    {"items", DictItems}, {"keys", DictKeys},    {"values", DictValues},
};

constexpr MethodDef kListMethods[] = {{"copy", SelfCopy}, {"count", SeqCount}, {"index", SeqIndex}};
constexpr MethodDef kTupleMethods[] = {{"count", SeqCount}, {"index", SeqIndex}};

// What the immutable sandbox refuses (jinja2.sandbox._mutable_spec).
constexpr std::string_view kUnsafeDictMethods[] = {"clear", "pop", "popitem", "setdefault",
                                                   "update"};
constexpr std::string_view kUnsafeListMethods[] = {"append", "clear",  "extend",  "insert",
                                                   "pop",    "remove", "reverse", "sort"};

template <size_t N>
const MethodDef* Lookup(const MethodDef (&table)[N], std::string_view name) {
  for (const MethodDef& def : table) {
    if (def.name == name) return &def;
  }
  return nullptr;
}

template <size_t N>
bool Listed(const std::string_view (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

}  // namespace

std::optional<Value> FindMethod(const Value& obj, std::string_view name) {
  const MethodDef* def = nullptr;
  bool unsafe = false;
  switch (obj.kind()) {
    case Value::Kind::kString:
      def = Lookup(kStrMethods, name);
      break;
    case Value::Kind::kDict:
      def = Lookup(kDictMethods, name);
      unsafe = Listed(kUnsafeDictMethods, name);
      break;
    case Value::Kind::kList:
      def = Lookup(kListMethods, name);
      unsafe = Listed(kUnsafeListMethods, name);
      break;
    case Value::Kind::kTuple:
      def = Lookup(kTupleMethods, name);
      break;
    default:
      break;
  }
  if (unsafe) {
    return Value::Undefined("access to attribute " + PyStrRepr(name) + " of " +
                            PyStrRepr(TypeName(obj)) + " object is unsafe.");
  }
  if (def == nullptr) return std::nullopt;
  return Value::FromCallable(std::make_shared<BoundMethod>(obj, def));
}

}  // namespace ckv::jinja
