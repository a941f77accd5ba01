// String formatting as Python does it: `"%s: %d" % args` and str.format with the common
// part of the format-spec mini-language.
#include "chat/jinja_format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "chat/jinja_ops.h"
#include "chat/jinja_text.h"

namespace ckv::jinja {
namespace {

Status TooLarge() {
  return Status::OutOfRange("formatted string larger than " + std::to_string(kMaxBuiltBytes >> 20) +
                            " MiB");
}

void Group(std::string* digits, char sep) {
  std::string out;
  const size_t n = digits->size();
  for (size_t i = 0; i < n; ++i) {
    if (i > 0 && (n - i) % 3 == 0) out.push_back(sep);
    out.push_back((*digits)[i]);
  }
  *digits = std::move(out);
}

// format(value, spec) for the format-spec mini-language's common subset:
// [[fill]align][sign][0][width][,|_][.precision][type].
Result<std::string> ApplyFormatSpec(const Value& v, std::string_view spec) {
  if (spec.empty()) return PyStr(v);
  const std::u32string cps = DecodeUtf8(spec);
  size_t i = 0;
  std::string fill = " ";
  char align = 0;
  auto is_align = [](char32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (cps.size() >= 2 && is_align(cps[1])) {
    fill = EncodeUtf8(cps.substr(0, 1));
    align = static_cast<char>(cps[1]);
    i = 2;
  } else if (!cps.empty() && is_align(cps[0])) {
    align = static_cast<char>(cps[0]);
    i = 1;
  }
  char sign = '-';
  if (i < cps.size() && (cps[i] == '+' || cps[i] == '-' || cps[i] == ' '))
    sign = static_cast<char>(cps[i++]);
  if (i < cps.size() && cps[i] == '0') {
    if (align == 0) {
      fill = "0";
      align = '=';
    }
    ++i;
  }
  int64_t width = 0;
  while (i < cps.size() && cps[i] >= '0' && cps[i] <= '9') width = width * 10 + (cps[i++] - '0');
  char grouping = 0;
  if (i < cps.size() && (cps[i] == ',' || cps[i] == '_')) grouping = static_cast<char>(cps[i++]);
  int precision = -1;
  if (i < cps.size() && cps[i] == '.') {
    precision = 0;
    ++i;
    while (i < cps.size() && cps[i] >= '0' && cps[i] <= '9')
      precision = precision * 10 + static_cast<int>(cps[i++] - '0');
  }
  char type = 0;
  if (i < cps.size()) type = static_cast<char>(cps[i++]);
  if (i != cps.size() || width > 4096 || precision > 300) {
    return Status::Unsupported("unsupported format spec '" + std::string(spec) + "'");
  }
  std::string body;
  std::string sign_text;
  if (v.is_string() || v.is_undefined() || v.is_none()) {
    if (type != 0 && type != 's') {
      return Status::InvalidArgument("Unknown format code '" + std::string(1, type) +
                                     "' for object of type '" + TypeName(v) + "'");
    }
    body = PyStr(v);
    if (precision >= 0)
      body = EncodeUtf8(DecodeUtf8(body).substr(0, static_cast<size_t>(precision)));
    if (align == 0) align = '<';
  } else if (v.is_number()) {
    const bool as_int = v.is_integral() && (type == 0 || type == 'd' || type == 'x' ||
                                            type == 'X' || type == 'o' || type == 'b');
    if (as_int) {
      const int64_t n = v.int_value();
      uint64_t mag = n < 0 ? 0 - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
      if (type == 'x' || type == 'X' || type == 'o' || type == 'b') {
        const int base = type == 'o' ? 8 : type == 'b' ? 2 : 16;
        const char* digits = type == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
        do {
          body.insert(body.begin(), digits[mag % static_cast<uint64_t>(base)]);
          mag /= static_cast<uint64_t>(base);
        } while (mag > 0);
      } else {
        body = std::to_string(mag);
        if (grouping != 0) Group(&body, grouping);
      }
      if (n < 0) sign_text = "-";
    } else {
      const double d = v.number_value();
      char buf[512];
      const double mag = std::fabs(d);
      switch (type) {
        case 0:
          if (precision < 0) {
            body = PyFloatRepr(mag);
          } else {
            std::snprintf(buf, sizeof(buf), "%.*g", std::max(precision, 1), mag);
            body = buf;
          }
          break;
        case 'f':
        case 'F':
        case 'e':
        case 'E':
        case 'g':
        case 'G': {
          const char fmt[] = {'%', '.', '*', type, '\0'};
          std::snprintf(buf, sizeof(buf), fmt, precision < 0 ? 6 : precision, mag);
          body = buf;
          break;
        }
        case '%':
          std::snprintf(buf, sizeof(buf), "%.*f", precision < 0 ? 6 : precision, mag * 100);
          body = std::string(buf) + "%";
          break;
        default:
          return Status::Unsupported("unsupported format code '" + std::string(1, type) + "'");
      }
      if (grouping != 0 && (type == 'f' || type == 'F')) {
        const size_t dot = body.find('.');
        std::string int_part = body.substr(0, dot);
        Group(&int_part, grouping);
        body = int_part + (dot == std::string::npos ? "" : body.substr(dot));
      }
      if (std::signbit(d) && !std::isnan(d)) sign_text = "-";
    }
    if (sign_text.empty() && sign != '-') sign_text = std::string(1, sign);
    if (align == 0) align = '>';
  } else {
    return Status::Unsupported("format spec for a " + TypeName(v) + " value");
  }
  const auto len = static_cast<int64_t>(CodePointCount(sign_text) + CodePointCount(body));
  const int64_t pad = std::max<int64_t>(0, width - len);
  auto repeat = [&](int64_t n) {
    std::string out;
    for (int64_t k = 0; k < n; ++k) out += fill;
    return out;
  };
  switch (align) {
    case '<':
      return sign_text + body + repeat(pad);
    case '^':
      return repeat(pad / 2) + sign_text + body + repeat(pad - pad / 2);
    case '=':
      return sign_text + repeat(pad) + body;
    default:
      return repeat(pad) + sign_text + body;
  }
}

// One replacement field's value: "0", "name", "name.attr", "0[key]".
Result<Value> FieldValue(std::string_view field, const CallArgs& args, size_t* auto_index,
                         int* numbering) {
  size_t end = 0;
  while (end < field.size() && field[end] != '.' && field[end] != '[') ++end;
  const std::string_view head = field.substr(0, end);
  Value v;
  if (head.empty() || head.find_first_not_of("0123456789") == std::string_view::npos) {
    size_t index = 0;
    if (head.empty()) {
      if (*numbering == 2) {
        return Status::InvalidArgument(
            "cannot switch from manual field specification to automatic field numbering");
      }
      *numbering = 1;
      index = (*auto_index)++;
    } else {
      if (*numbering == 1) {
        return Status::InvalidArgument(
            "cannot switch from automatic field numbering to manual field specification");
      }
      *numbering = 2;
      index = static_cast<size_t>(std::stoul(std::string(head)));
    }
    if (index >= args.positional.size()) {
      return Status::InvalidArgument("Replacement index " + std::to_string(index) +
                                     " out of range for positional args tuple");
    }
    v = args.positional[index];
  } else {
    const Value* found = nullptr;
    for (const auto& [k, val] : args.keyword) {
      if (k == head) found = &val;
    }
    if (found == nullptr) return Status::InvalidArgument("KeyError: '" + std::string(head) + "'");
    v = *found;
  }
  while (end < field.size()) {
    if (v.is_undefined()) return UndefinedError(v);
    if (field[end] == '.') {
      size_t next = end + 1;
      while (next < field.size() && field[next] != '.' && field[next] != '[') ++next;
      v = GetAttr(v, field.substr(end + 1, next - end - 1));
      end = next;
    } else {
      const size_t close = field.find(']', end);
      if (close == std::string_view::npos)
        return Status::InvalidArgument("Missing ']' in format string");
      const std::string key(field.substr(end + 1, close - end - 1));
      const bool digits = !key.empty() &&
                          key.find_first_not_of("0123456789") == std::string::npos &&
                          key.size() < 18;
      v = GetItem(v, digits ? Value::Int(std::stoll(key)) : Value::String(key));
      end = close + 1;
    }
  }
  return v;
}

}  // namespace

Result<Value> PercentFormat(const std::string& format, const Value& args) {
  ValueList values;
  if (args.kind() == Value::Kind::kTuple) {
    values = args.items();
  } else {
    values.push_back(args);
  }
  const bool mapping = args.is_dict();
  // Python skips the "not all arguments converted" check for any subscriptable argument.
  const bool subscriptable = mapping || args.kind() == Value::Kind::kList || args.is_undefined();
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out.push_back(format[i]);
      continue;
    }
    if (++i >= format.size()) return Status::InvalidArgument("incomplete format");
    if (format[i] == '%') {
      out.push_back('%');
      continue;
    }
    Value arg;
    if (format[i] == '(') {
      const size_t close = format.find(')', i);
      if (!mapping || close == std::string::npos) {
        return TypeError("format requires a mapping");
      }
      const Value* v = args.dict().Find(std::string_view(format).substr(i + 1, close - i - 1));
      if (v == nullptr) return Status::InvalidArgument("format key not found");
      arg = *v;
      i = close + 1;
    } else {
      if (next >= values.size()) return TypeError("not enough arguments for format string");
      arg = values[next++];
    }
    int precision = -1;
    if (i < format.size() && format[i] == '.') {
      precision = 0;
      while (++i < format.size() && format[i] >= '0' && format[i] <= '9') {
        precision = precision * 10 + (format[i] - '0');
      }
    }
    if (i >= format.size()) return Status::InvalidArgument("incomplete format");
    const char conv = format[i];
    switch (conv) {
      case 's':
        out += PyStr(arg);
        break;
      case 'r':
        out += PyRepr(arg);
        break;
      case 'd':
      case 'i':
        if (!arg.is_number()) {
          return TypeError("%" + std::string(1, conv) + " format: a real number is required, not " +
                           TypeName(arg));
        }
        out += std::to_string(arg.is_float() ? static_cast<int64_t>(arg.number_value())
                                             : arg.int_value());
        break;
      case 'f': {
        if (!arg.is_number()) {
          return TypeError("must be real number, not " + TypeName(arg));
        }
        char buf[64];
        std::snprintf(buf, sizeof(buf), "%.*f", precision < 0 ? 6 : precision, arg.number_value());
        out += buf;
        break;
      }
      default:
        return Status::Unsupported("unsupported %-format conversion '" + std::string(1, conv) +
                                   "'");
    }
  }
  if (!subscriptable && next < values.size()) {
    return TypeError("not all arguments converted during string formatting");
  }
  return Value::String(std::move(out));
}

Result<Value> StrFormat(const std::string& f, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  int numbering = 0;  // 1 automatic, 2 manual
  for (size_t i = 0; i < f.size(); ++i) {
    const char c = f[i];
    if (c == '}') {
      if (i + 1 < f.size() && f[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      return Status::InvalidArgument("Single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < f.size() && f[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    const size_t close = f.find('}', i + 1);
    if (close == std::string::npos) {
      return Status::InvalidArgument("Single '{' encountered in format string");
    }
    const std::string_view field(f.data() + i + 1, close - i - 1);
    if (field.find('{') != std::string_view::npos) {
      return Status::Unsupported("nested replacement fields in str.format");
    }
    size_t name_end = field.find_first_of("!:");
    if (name_end == std::string_view::npos) name_end = field.size();
    CKV_ASSIGN_OR_RETURN(Value v,
                         FieldValue(field.substr(0, name_end), args, &auto_index, &numbering));
    std::string_view rest = field.substr(name_end);
    if (!rest.empty() && rest[0] == '!') {
      if (rest.size() < 2 || (rest[1] != 'r' && rest[1] != 's')) {
        return Status::Unsupported("unsupported conversion in str.format");
      }
      v = Value::String(rest[1] == 'r' ? PyRepr(v) : PyStr(v));
      rest.remove_prefix(2);
    }
    if (!rest.empty() && rest[0] != ':')
      return Status::InvalidArgument("expected ':' after conversion specifier");
    if (!rest.empty()) rest.remove_prefix(1);
    CKV_ASSIGN_OR_RETURN(std::string text, ApplyFormatSpec(v, rest));
    out += text;
    if (out.size() > kMaxBuiltBytes) return TooLarge();
    i = close;
  }
  return Value::String(std::move(out));
}

}  // namespace ckv::jinja
