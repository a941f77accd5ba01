// The parsed template: expression and statement nodes. The tree is immutable after parsing
// and shared by every render, which is what makes const rendering thread-safe.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_value.h"

namespace ckv::jinja {

// Counts nesting (parser and renderer) for their depth limits; RAII so every exit path undoes it.
class DepthGuard {
 public:
  explicit DepthGuard(int* depth) : depth_(depth) { ++*depth_; }
  ~DepthGuard() { --*depth_; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;

 private:
  int* depth_;
};

struct FilterDef;
struct TestDef;

enum class ExprKind : uint8_t {
  kLiteral,   // literal
  kName,      // name
  kList,      // args: items
  kTuple,     // args: items
  kDict,      // args: key0, value0, key1, value1, ...
  kGetAttr,   // args[0].name
  kGetItem,   // args[0][args[1]]
  kSlice,     // args[0][args[1]:args[2]:args[3]], each bound may be null
  kCall,      // args[0](args[1..], kwargs)
  kFilter,    // args[0] | filter(args[1..], kwargs); args[0] null in a filter block's chain
  kTest,      // args[0] is test(args[1..], kwargs)
  kNeg,       // -args[0]
  kPos,       // +args[0]
  kNot,       // not args[0]
  kAnd,       // args[0] and args[1]
  kOr,        // args[0] or args[1]
  kBinary,    // args[0] bin_op args[1]
  kCompare,   // args[0] cmp_ops[0] args[1] cmp_ops[1] args[2] ... (chained, as in Python)
  kConcat,    // args[0] ~ args[1] ~ ...
  kCondExpr,  // args[1] if args[0] else args[2]; args[2] may be null
};

enum class BinaryOp : uint8_t { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow };
enum class CompareOp : uint8_t { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  int line = 0;
  Value literal;
  std::string name;  // kName, kGetAttr's attribute, kFilter / kTest name
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  // kCall, kFilter, kTest
  BinaryOp bin_op = BinaryOp::kAdd;
  std::vector<CompareOp> cmp_ops;
  const FilterDef* filter = nullptr;  // resolved at parse time
  const TestDef* test = nullptr;
};

// An assignment target: a name, or a (possibly nested) tuple of names.
struct Target {
  std::string name;
  std::vector<Target> items;
  bool is_tuple = false;
};

enum class NodeKind : uint8_t {
  kText,
  kOutput,       // {{ expr }}
  kIf,           // branches, else_body
  kFor,          // target in expr [if cond] body [else else_body]
  kSet,          // target = expr, or ns.attr = expr (ns_attr set)
  kSetBlock,     // {% set target [| filters] %}body{% endset %}; expr = filter chain or null
  kMacro,        // {% macro name(params) %}body
  kCallBlock,    // {% call(params) expr %}body: expr is the call, body becomes `caller`
  kFilterBlock,  // {% filter chain %}body
  kWith,         // {% with a = x, ... %}body (with_vars)
  kScope,        // a body in its own scope ({% generation %})
  kBreak,
  kContinue,
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using NodeList = std::vector<NodePtr>;

struct IfBranch {
  ExprPtr cond;
  NodeList body;
};

struct Param {
  std::string name;
  ExprPtr default_value;  // may be null
};

struct Node {
  NodeKind kind = NodeKind::kText;
  int line = 0;
  std::string text;     // kText's text; kMacro's name
  ExprPtr expr;         // see NodeKind
  ExprPtr cond;         // kFor's loop filter
  Target target;        // kFor, kSet, kSetBlock
  std::string ns_attr;  // kSet / kSetBlock into a namespace: target.name is the namespace
  std::vector<IfBranch> branches;
  NodeList body;
  NodeList else_body;
  std::vector<Param> params;  // kMacro, kCallBlock
  std::vector<std::pair<Target, ExprPtr>> with_vars;
  // kMacro: the body reads `varargs` / `kwargs` / `caller`, which then accept extra arguments
  // (Jinja decides this the same way).
  bool uses_varargs = false;
  bool uses_kwargs = false;
  bool uses_caller = false;
};

struct TemplateAst {
  NodeList body;
};

}  // namespace ckv::jinja
