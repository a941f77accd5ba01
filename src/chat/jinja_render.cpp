#include "chat/jinja_render.h"

#include "chat/jinja_builtins.h"
#include "chat/jinja_ops.h"

namespace ckv::jinja {
namespace {

// A macro or a call block's body as a value. The scope is weak: the Renderer keeps it alive
// for the render (see Renderer::macro_scopes_).
class MacroCallable final : public Callable {
 public:
  MacroCallable(const Node* node, std::weak_ptr<Scope> closure)
      : node_(node), closure_(std::move(closure)) {}

  std::string Repr() const override {
    return "<Macro '" + (node_->kind == NodeKind::kMacro ? node_->text : "caller") + "'>";
  }

  Result<Value> Call(Renderer& renderer, CallArgs args) const override {
    std::shared_ptr<Scope> closure = closure_.lock();
    if (!closure) return Status::Internal("macro called after its render ended");
    return renderer.CallMacro(*node_, closure, std::move(args));
  }

 private:
  const Node* node_;
  std::weak_ptr<Scope> closure_;
};

// loop.cycle(a, b, ...): the argument at the iteration's index, round robin.
class LoopCycle final : public Callable {
 public:
  explicit LoopCycle(size_t index0) : index0_(index0) {}
  std::string Repr() const override { return "<bound method LoopContext.cycle>"; }
  Result<Value> Call(Renderer&, CallArgs args) const override {
    if (args.positional.empty()) return TypeError("no items for cycling given");
    return args.positional[index0_ % args.positional.size()];
  }

 private:
  size_t index0_;
};

// loop.changed(*values): true when the values differ from the previous call's. One per loop,
// shared by its iterations; the state lives only as long as the render.
class LoopChanged final : public Callable {
 public:
  std::string Repr() const override { return "<bound method LoopContext.changed>"; }
  Result<Value> Call(Renderer&, CallArgs args) const override {
    const Value values = Value::Tuple(std::move(args.positional));
    if (has_last_ && PyEquals(last_, values)) return Value::Bool(false);
    last_ = values;
    has_last_ = true;
    return Value::Bool(true);
  }

 private:
  mutable Value last_;
  mutable bool has_last_ = false;
};

Value MakeLoop(const ValueList& items, size_t i, const Value& changed) {
  const auto n = static_cast<int64_t>(items.size());
  const auto index0 = static_cast<int64_t>(i);
  Dict loop;
  loop.Set(Value::String("index"), Value::Int(index0 + 1));
  loop.Set(Value::String("index0"), Value::Int(index0));
  loop.Set(Value::String("revindex"), Value::Int(n - index0));
  loop.Set(Value::String("revindex0"), Value::Int(n - index0 - 1));
  loop.Set(Value::String("first"), Value::Bool(i == 0));
  loop.Set(Value::String("last"), Value::Bool(index0 == n - 1));
  loop.Set(Value::String("length"), Value::Int(n));
  loop.Set(Value::String("depth"), Value::Int(1));
  loop.Set(Value::String("depth0"), Value::Int(0));
  loop.Set(Value::String("previtem"),
           i > 0 ? items[i - 1] : Value::Undefined("there is no previous item"));
  loop.Set(Value::String("nextitem"),
           index0 + 1 < n ? items[i + 1] : Value::Undefined("there is no next item"));
  loop.Set(Value::String("cycle"), Value::FromCallable(std::make_shared<LoopCycle>(i)));
  loop.Set(Value::String("changed"), changed);
  return Value::FromDict(std::move(loop));
}

}  // namespace

const Value* Scope::Find(std::string_view name) const {
  for (const Scope* s = this; s != nullptr; s = s->parent_.get()) {
    for (const auto& [key, value] : s->vars_) {
      if (key == name) return &value;
    }
  }
  return nullptr;
}

void Scope::Set(std::string_view name, Value value) {
  for (auto& [key, existing] : vars_) {
    if (key == name) {
      existing = std::move(value);
      return;
    }
  }
  vars_.emplace_back(std::string(name), std::move(value));
}

Result<std::string> Renderer::Render(const TemplateAst& ast, std::shared_ptr<Scope> globals) {
  std::string out;
  Result<Flow> flow = ExecBody(ast.body, globals, &out);
  macro_scopes_.clear();
  if (!flow.ok()) return flow.status();
  return out;
}

Status Renderer::Raise(std::string message) {
  error_reported_ = true;
  return Status::InvalidArgument(std::move(message));
}

Status Renderer::Fail(int line, const Status& status) {
  if (error_reported_ || status.ok()) return status;
  error_reported_ = true;
  return status.WithContext("chat template line " + std::to_string(line));
}

Status Renderer::Emit(std::string* out, std::string_view text, int line) {
  if (out->size() + text.size() > limits_.max_output_bytes) {
    return Fail(line, Status::OutOfRange("rendered output exceeds the limit of " +
                                         std::to_string(limits_.max_output_bytes) + " bytes"));
  }
  out->append(text);
  return Status::OK();
}

Result<Value> Renderer::Checked(int line, Value v) {
  if (v.depth() > kMaxValueDepth) {
    return Fail(line, Status::OutOfRange("value nested deeper than " +
                                         std::to_string(kMaxValueDepth) + " levels"));
  }
  return v;
}

// ---- statements ----

Result<Renderer::Flow> Renderer::ExecBody(const NodeList& body, const std::shared_ptr<Scope>& scope,
                                          std::string* out) {
  for (const NodePtr& node : body) {
    CKV_ASSIGN_OR_RETURN(Flow flow, ExecNode(*node, scope, out));
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

Result<Renderer::Flow> Renderer::ExecNode(const Node& node, const std::shared_ptr<Scope>& scope,
                                          std::string* out) {
  DepthGuard guard(&depth_);
  if (depth_ > limits_.max_depth) {
    return Fail(node.line, Status::OutOfRange("template recursion deeper than " +
                                              std::to_string(limits_.max_depth) + " levels"));
  }
  switch (node.kind) {
    case NodeKind::kText:
      CKV_RETURN_IF_ERROR(Emit(out, node.text, node.line));
      return Flow::kNormal;
    case NodeKind::kOutput: {
      CKV_ASSIGN_OR_RETURN(Value v, Eval(*node.expr, *scope));
      if (v.is_string()) {
        CKV_RETURN_IF_ERROR(Emit(out, v.str(), node.line));
      } else {
        CKV_RETURN_IF_ERROR(Emit(out, PyStr(v), node.line));
      }
      return Flow::kNormal;
    }
    case NodeKind::kIf:
      for (const IfBranch& branch : node.branches) {
        CKV_ASSIGN_OR_RETURN(Value cond, Eval(*branch.cond, *scope));
        if (Truthy(cond)) return ExecBody(branch.body, scope, out);
      }
      return ExecBody(node.else_body, scope, out);
    case NodeKind::kFor:
      return ExecFor(node, scope, out);
    case NodeKind::kSet: {
      CKV_ASSIGN_OR_RETURN(Value v, Eval(*node.expr, *scope));
      CKV_RETURN_IF_ERROR(ExecSet(node, scope, std::move(v)));
      return Flow::kNormal;
    }
    case NodeKind::kSetBlock: {
      // A break / continue in the body leaves the loop before the assignment, as in Jinja.
      std::string text;
      CKV_ASSIGN_OR_RETURN(Flow flow, ExecBody(node.body, std::make_shared<Scope>(scope), &text));
      if (flow != Flow::kNormal) return flow;
      Value v = Value::String(std::move(text));
      if (node.expr) {
        CKV_ASSIGN_OR_RETURN(v, EvalFilter(*node.expr, *scope, &v));
      }
      CKV_RETURN_IF_ERROR(ExecSet(node, scope, std::move(v)));
      return Flow::kNormal;
    }
    case NodeKind::kMacro:
      scope->Set(node.text, DefineMacro(node, scope));
      return Flow::kNormal;
    case NodeKind::kCallBlock: {
      const Value caller = DefineMacro(node, scope);
      CKV_ASSIGN_OR_RETURN(Value v, EvalCall(*node.expr, *scope, &caller));
      CKV_RETURN_IF_ERROR(Emit(out, PyStr(v), node.line));
      return Flow::kNormal;
    }
    case NodeKind::kFilterBlock: {
      std::string text;
      CKV_ASSIGN_OR_RETURN(Flow flow, ExecBody(node.body, std::make_shared<Scope>(scope), &text));
      if (flow != Flow::kNormal) return flow;
      const Value input = Value::String(std::move(text));
      CKV_ASSIGN_OR_RETURN(Value v, EvalFilter(*node.expr, *scope, &input));
      CKV_RETURN_IF_ERROR(Emit(out, PyStr(v), node.line));
      return Flow::kNormal;
    }
    case NodeKind::kWith: {
      // Values are evaluated in the enclosing scope, then bound in the inner one.
      auto inner = std::make_shared<Scope>(scope);
      for (const auto& [target, expr] : node.with_vars) {
        CKV_ASSIGN_OR_RETURN(Value v, Eval(*expr, *scope));
        CKV_RETURN_IF_ERROR(BindTarget(target, v, *inner, node.line));
      }
      return ExecBody(node.body, inner, out);
    }
    case NodeKind::kScope:
      return ExecBody(node.body, std::make_shared<Scope>(scope), out);
    case NodeKind::kBreak:
      return Flow::kBreak;
    case NodeKind::kContinue:
      return Flow::kContinue;
  }
  return Fail(node.line, Status::Internal("unknown statement"));
}

Result<Renderer::Flow> Renderer::ExecFor(const Node& node, const std::shared_ptr<Scope>& scope,
                                         std::string* out) {
  CKV_ASSIGN_OR_RETURN(Value iterable, Eval(*node.expr, *scope));
  Result<ValueList> listed = Iterate(iterable);
  if (!listed.ok()) return Fail(node.line, listed.status());
  ValueList items = std::move(listed).value();
  if (node.cond) {
    // The loop filter runs before the body sees any item, so loop.length and loop.last
    // count only the items that pass, as in Jinja.
    ValueList kept;
    for (Value& item : items) {
      Scope probe(scope);
      CKV_RETURN_IF_ERROR(BindTarget(node.target, item, probe, node.line));
      CKV_ASSIGN_OR_RETURN(Value keep, Eval(*node.cond, probe));
      if (Truthy(keep)) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) return ExecBody(node.else_body, std::make_shared<Scope>(scope), out);
  const Value changed = Value::FromCallable(std::make_shared<LoopChanged>());
  for (size_t i = 0; i < items.size(); ++i) {
    if (++iterations_ > limits_.max_loop_iterations) {
      return Fail(node.line,
                  Status::OutOfRange("more than " + std::to_string(limits_.max_loop_iterations) +
                                     " loop iterations"));
    }
    auto iteration = std::make_shared<Scope>(scope);
    CKV_RETURN_IF_ERROR(BindTarget(node.target, items[i], *iteration, node.line));
    iteration->Set("loop", MakeLoop(items, i, changed));
    CKV_ASSIGN_OR_RETURN(Flow flow, ExecBody(node.body, iteration, out));
    if (flow == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

Status Renderer::ExecSet(const Node& node, const std::shared_ptr<Scope>& scope, Value value) {
  if (node.ns_attr.empty()) return BindTarget(node.target, value, *scope, node.line);
  const Value* ns = scope->Find(node.target.name);
  if (ns == nullptr || !ns->is_namespace()) {
    return Fail(node.line, TypeError("cannot assign attribute on non-namespace object"));
  }
  // Jinja allows it, no chat template does it, and refusing it keeps every value a tree of
  // bounded depth: namespaces are the only containers that change after they are built, so
  // one inside another could form cycles or chains of any depth.
  if (value.may_hold_namespace()) {
    return Fail(node.line,
                Status::Unsupported("unsupported: a namespace attribute holding a namespace"));
  }
  if (value.depth() + 1 > kMaxValueDepth) {
    return Fail(node.line, Status::OutOfRange("value nested deeper than " +
                                              std::to_string(kMaxValueDepth) + " levels"));
  }
  ns->namespace_attrs().Set(Value::String(node.ns_attr), std::move(value));
  return Status::OK();
}

Status Renderer::BindTarget(const Target& target, const Value& value, Scope& scope, int line) {
  if (!target.is_tuple) {
    scope.Set(target.name, value);
    return Status::OK();
  }
  if (value.is_undefined()) return Fail(line, UndefinedError(value));
  Result<ValueList> items = Iterate(value);
  if (!items.ok()) {
    return Fail(line, TypeError("cannot unpack non-iterable " + TypeName(value) + " object"));
  }
  const size_t want = target.items.size();
  if (items->size() != want) {
    return Fail(line, Status::InvalidArgument(
                          items->size() > want
                              ? "too many values to unpack (expected " + std::to_string(want) + ")"
                              : "not enough values to unpack (expected " + std::to_string(want) +
                                    ", got " + std::to_string(items->size()) + ")"));
  }
  for (size_t i = 0; i < want; ++i) {
    CKV_RETURN_IF_ERROR(BindTarget(target.items[i], (*items)[i], scope, line));
  }
  return Status::OK();
}

Value Renderer::DefineMacro(const Node& node, const std::shared_ptr<Scope>& scope) {
  if (macro_scopes_.empty() || macro_scopes_.back() != scope) macro_scopes_.push_back(scope);
  return Value::FromCallable(std::make_shared<MacroCallable>(&node, scope));
}

Result<Value> Renderer::CallMacro(const Node& node, const std::shared_ptr<Scope>& closure,
                                  CallArgs args) {
  const std::string name = node.kind == NodeKind::kMacro ? node.text : "caller";
  auto frame = std::make_shared<Scope>(closure);
  const size_t n = node.params.size();
  std::vector<bool> bound(n, false);
  ValueList extra;
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < n) {
      frame->Set(node.params[i].name, std::move(args.positional[i]));
      bound[i] = true;
    } else if (node.uses_varargs) {
      extra.push_back(std::move(args.positional[i]));
    } else {
      return TypeError("macro '" + name + "' takes not more than " + std::to_string(n) +
                       " argument(s)");
    }
  }
  Dict kwargs;
  bool has_caller = false;
  for (auto& [key, value] : args.keyword) {
    size_t i = 0;
    while (i < n && node.params[i].name != key) ++i;
    if (i < n) {
      if (bound[i])
        return TypeError("macro '" + name + "' got multiple values for argument '" + key + "'");
      frame->Set(key, std::move(value));
      bound[i] = true;
    } else if (key == "caller" && node.uses_caller) {
      frame->Set("caller", std::move(value));
      has_caller = true;
    } else if (node.uses_kwargs) {
      kwargs.Set(Value::String(key), std::move(value));
    } else {
      return TypeError("macro '" + name + "' takes no keyword argument '" + key + "'");
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (bound[i]) continue;
    const Param& param = node.params[i];
    if (param.default_value) {
      // Defaults are evaluated at call time, seeing the parameters before them.
      CKV_ASSIGN_OR_RETURN(Value v, Eval(*param.default_value, *frame));
      frame->Set(param.name, std::move(v));
    } else {
      frame->Set(param.name, Value::Undefined("parameter '" + param.name + "' was not provided"));
    }
  }
  if (node.uses_varargs) frame->Set("varargs", Value::Tuple(std::move(extra)));
  if (node.uses_kwargs) frame->Set("kwargs", Value::FromDict(std::move(kwargs)));
  if (node.uses_caller && !has_caller) frame->Set("caller", Value::Undefined("No caller defined"));
  std::string text;
  CKV_ASSIGN_OR_RETURN(Flow flow, ExecBody(node.body, frame, &text));
  (void)flow;
  return Value::String(std::move(text));
}

// ---- expressions ----

Result<Value> Renderer::Eval(const Expr& e, Scope& scope) {
  DepthGuard guard(&depth_);
  if (depth_ > limits_.max_depth) {
    return Fail(e.line, Status::OutOfRange("template recursion deeper than " +
                                           std::to_string(limits_.max_depth) + " levels"));
  }
  return EvalInner(e, scope);
}

Result<Value> Renderer::EvalInner(const Expr& e, Scope& scope) {
  switch (e.kind) {
    case ExprKind::kLiteral:
      return e.literal;
    case ExprKind::kName:
      return EvalName(e, scope);
    case ExprKind::kList:
    case ExprKind::kTuple:
    case ExprKind::kDict:
      return EvalContainer(e, scope);
    case ExprKind::kGetAttr:
    case ExprKind::kGetItem:
    case ExprKind::kSlice:
      return EvalSubscript(e, scope);
    case ExprKind::kCall:
      return EvalCall(e, scope, nullptr);
    case ExprKind::kFilter:
      return EvalFilter(e, scope, nullptr);
    case ExprKind::kTest:
      return EvalTest(e, scope);
    case ExprKind::kNot: {
      CKV_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0], scope));
      return Value::Bool(!Truthy(v));
    }
    case ExprKind::kAnd:
    case ExprKind::kOr: {
      // Python returns the deciding operand, not a bool: {{ x or 'default' }}.
      CKV_ASSIGN_OR_RETURN(Value left, Eval(*e.args[0], scope));
      if (Truthy(left) == (e.kind == ExprKind::kOr)) return left;
      return Eval(*e.args[1], scope);
    }
    case ExprKind::kCompare:
      return EvalCompare(e, scope);
    case ExprKind::kConcat: {
      std::string text;
      for (const ExprPtr& arg : e.args) {
        CKV_ASSIGN_OR_RETURN(Value v, Eval(*arg, scope));
        AppendPyStr(v, &text);
        if (text.size() > kMaxBuiltBytes) {
          return Fail(e.line, Status::OutOfRange("string built by '~' is too large"));
        }
      }
      return Value::String(std::move(text));
    }
    case ExprKind::kCondExpr: {
      CKV_ASSIGN_OR_RETURN(Value cond, Eval(*e.args[0], scope));
      if (Truthy(cond)) return Eval(*e.args[1], scope);
      if (e.args[2]) return Eval(*e.args[2], scope);
      return Value::Undefined("the inline if-expression on line " + std::to_string(e.line) +
                              " evaluated to false and no else section was defined.");
    }
    case ExprKind::kNeg:
    case ExprKind::kPos:
    case ExprKind::kBinary:
      return EvalOperator(e, scope);
  }
  return Fail(e.line, Status::Internal("unknown expression"));
}

Result<Value> Renderer::EvalName(const Expr& e, Scope& scope) {
  if (const Value* v = scope.Find(e.name)) return *v;
  if (const Value* v = FindGlobal(e.name)) return *v;
  return Value::Undefined("'" + e.name + "' is undefined");
}

Result<Value> Renderer::EvalContainer(const Expr& e, Scope& scope) {
  if (e.kind == ExprKind::kDict) {
    Dict dict;
    for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
      CKV_ASSIGN_OR_RETURN(Value key, Eval(*e.args[i], scope));
      CKV_ASSIGN_OR_RETURN(Value value, Eval(*e.args[i + 1], scope));
      if (Status st = CheckHashable(key); !st.ok()) return Fail(e.line, st);
      dict.Set(std::move(key), std::move(value));
    }
    return Checked(e.line, Value::FromDict(std::move(dict)));
  }
  ValueList items;
  items.reserve(e.args.size());
  for (const ExprPtr& arg : e.args) {
    CKV_ASSIGN_OR_RETURN(Value v, Eval(*arg, scope));
    items.push_back(std::move(v));
  }
  return Checked(e.line, e.kind == ExprKind::kList ? Value::List(std::move(items))
                                                   : Value::Tuple(std::move(items)));
}

Result<Value> Renderer::EvalSubscript(const Expr& e, Scope& scope) {
  CKV_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0], scope));
  // Reading from an undefined value is Jinja's UndefinedError; testing it is not.
  if (obj.is_undefined()) return Fail(e.line, UndefinedError(obj));
  if (e.kind == ExprKind::kGetAttr) return GetAttr(obj, e.name);
  if (e.kind == ExprKind::kGetItem) {
    CKV_ASSIGN_OR_RETURN(Value key, Eval(*e.args[1], scope));
    return GetItem(obj, key);
  }
  Value bounds[3] = {Value::None(), Value::None(), Value::None()};
  for (size_t i = 0; i < 3; ++i) {
    if (e.args[i + 1]) {
      CKV_ASSIGN_OR_RETURN(bounds[i], Eval(*e.args[i + 1], scope));
    }
  }
  Result<Value> sliced = SliceOf(obj, bounds[0], bounds[1], bounds[2]);
  if (!sliced.ok()) return Fail(e.line, sliced.status());
  return sliced;
}

Result<CallArgs> Renderer::EvalArgs(const Expr& e, Scope& scope) {
  CallArgs args;
  args.positional.reserve(e.args.size() - 1);
  for (size_t i = 1; i < e.args.size(); ++i) {
    CKV_ASSIGN_OR_RETURN(Value v, Eval(*e.args[i], scope));
    args.positional.push_back(std::move(v));
  }
  for (const auto& [name, expr] : e.kwargs) {
    CKV_ASSIGN_OR_RETURN(Value v, Eval(*expr, scope));
    args.keyword.emplace_back(name, std::move(v));
  }
  return args;
}

Result<Value> Renderer::EvalCall(const Expr& e, Scope& scope, const Value* caller) {
  CKV_ASSIGN_OR_RETURN(Value callee, Eval(*e.args[0], scope));
  CKV_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, scope));
  if (caller != nullptr) args.keyword.emplace_back("caller", *caller);
  if (callee.is_undefined()) return Fail(e.line, UndefinedError(callee));
  if (!callee.is_callable()) {
    return Fail(e.line, TypeError("'" + TypeName(callee) + "' object is not callable"));
  }
  Result<Value> result = callee.callable().Call(*this, std::move(args));
  if (!result.ok()) return Fail(e.line, result.status());
  return Checked(e.line, std::move(result).value());
}

Result<Value> Renderer::EvalFilter(const Expr& e, Scope& scope, const Value* input) {
  Value value;
  if (!e.args[0]) {
    value = *input;
  } else if (input != nullptr && e.args[0]->kind == ExprKind::kFilter) {
    CKV_ASSIGN_OR_RETURN(value, EvalFilter(*e.args[0], scope, input));
  } else {
    CKV_ASSIGN_OR_RETURN(value, Eval(*e.args[0], scope));
  }
  CKV_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, scope));
  Result<Value> result = e.filter->fn(*this, value, args);
  if (!result.ok()) return Fail(e.line, result.status());
  return Checked(e.line, std::move(result).value());
}

Result<Value> Renderer::EvalTest(const Expr& e, Scope& scope) {
  CKV_ASSIGN_OR_RETURN(Value value, Eval(*e.args[0], scope));
  CKV_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, scope));
  Result<bool> result = e.test->fn(*this, value, args);
  if (!result.ok()) return Fail(e.line, result.status());
  return Value::Bool(*result);
}

Result<Value> Renderer::EvalCompare(const Expr& e, Scope& scope) {
  CKV_ASSIGN_OR_RETURN(Value left, Eval(*e.args[0], scope));
  for (size_t i = 0; i < e.cmp_ops.size(); ++i) {
    CKV_ASSIGN_OR_RETURN(Value right, Eval(*e.args[i + 1], scope));
    Result<bool> r = false;
    switch (e.cmp_ops[i]) {
      case CompareOp::kEq:
        r = PyEquals(left, right);
        break;
      case CompareOp::kNe:
        r = !PyEquals(left, right);
        break;
      case CompareOp::kLt:
        r = PyLess(left, right);
        break;
      case CompareOp::kGt:
        r = PyLess(right, left);
        break;
      case CompareOp::kLe:
      case CompareOp::kGe: {
        const bool le = e.cmp_ops[i] == CompareOp::kLe;
        Result<bool> less = le ? PyLess(right, left) : PyLess(left, right);
        r = less.ok() ? Result<bool>(!*less) : less;
        break;
      }
      case CompareOp::kIn:
      case CompareOp::kNotIn: {
        Result<bool> in = Contains(right, left);
        r = !in.ok() || e.cmp_ops[i] == CompareOp::kIn ? in : Result<bool>(!*in);
        break;
      }
    }
    if (!r.ok()) return Fail(e.line, r.status());
    if (!*r) return Value::Bool(false);
    left = std::move(right);  // chained: a < b < c is a < b and b < c
  }
  return Value::Bool(true);
}

Result<Value> Renderer::EvalOperator(const Expr& e, Scope& scope) {
  CKV_ASSIGN_OR_RETURN(Value a, Eval(*e.args[0], scope));
  Result<Value> r = Value();
  if (e.kind == ExprKind::kNeg) {
    r = Negate(a);
  } else if (e.kind == ExprKind::kPos) {
    r = UnaryPlus(a);
  } else {
    CKV_ASSIGN_OR_RETURN(Value b, Eval(*e.args[1], scope));
    r = ApplyBinary(e.bin_op, a, b);
  }
  if (!r.ok()) return Fail(e.line, r.status());
  return Checked(e.line, std::move(r).value());
}

}  // namespace ckv::jinja
