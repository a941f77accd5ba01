// The evaluator: walks the template tree with a chain of variable scopes and writes the
// output. One Renderer serves one render call (it holds that call's scopes, counters and
// error state), so a parsed template renders from many threads at once.
//
// Scoping follows Jinja2: a for loop gives every iteration a fresh scope whose parent is the
// enclosing one (a `set` inside the loop does not leak out, nor into the next iteration);
// `if` has no scope of its own; macros see the variables of the scope they were defined in
// as they are when called.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/jinja_ast.h"
#include "chat/jinja_value.h"

namespace ckv::jinja {

struct RenderLimits {
  size_t max_output_bytes = size_t{64} << 20;
  // Nested evaluation: statements, expressions and macro calls together. Bounds the native
  // stack (a recursive macro) before it overflows.
  int max_depth = 500;
  // Loop iterations over the whole render: stops templates that spin without output.
  uint64_t max_loop_iterations = 10'000'000;
};

class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent = nullptr) : parent_(std::move(parent)) {}
  // This scope, then its parents.
  const Value* Find(std::string_view name) const;
  void Set(std::string_view name, Value value);

 private:
  std::shared_ptr<Scope> parent_;
  std::vector<std::pair<std::string, Value>> vars_;
};

class Renderer {
 public:
  explicit Renderer(const RenderLimits& limits) : limits_(limits) {}
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  // Renders `ast` with `globals` (the template's variables) as the outermost scope.
  Result<std::string> Render(const TemplateAst& ast, std::shared_ptr<Scope> globals);

  // raise_exception(message): Render fails with exactly this message (InvalidArgument), the
  // way Hugging Face surfaces the template's own refusal.
  Status Raise(std::string message);

  // Calls a macro (or a call block's `caller`) defined by `node` in `closure`.
  Result<Value> CallMacro(const Node& node, const std::shared_ptr<Scope>& closure, CallArgs args);

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  Result<Flow> ExecBody(const NodeList& body, const std::shared_ptr<Scope>& scope,
                        std::string* out);
  Result<Flow> ExecNode(const Node& node, const std::shared_ptr<Scope>& scope, std::string* out);
  Result<Flow> ExecFor(const Node& node, const std::shared_ptr<Scope>& scope, std::string* out);
  Status ExecSet(const Node& node, const std::shared_ptr<Scope>& scope, Value value);
  Status BindTarget(const Target& target, const Value& value, Scope& scope, int line);
  Value DefineMacro(const Node& node, const std::shared_ptr<Scope>& scope);

  Result<Value> Eval(const Expr& e, Scope& scope);
  Result<Value> EvalInner(const Expr& e, Scope& scope);
  Result<Value> EvalName(const Expr& e, Scope& scope);
  Result<Value> EvalContainer(const Expr& e, Scope& scope);
  Result<Value> EvalSubscript(const Expr& e, Scope& scope);
  Result<Value> EvalCall(const Expr& e, Scope& scope, const Value* caller);
  Result<CallArgs> EvalArgs(const Expr& e, Scope& scope);
  // `input` replaces the innermost operand of a filter chain ({% filter %}, {% set %} blocks).
  Result<Value> EvalFilter(const Expr& e, Scope& scope, const Value* input);
  Result<Value> EvalTest(const Expr& e, Scope& scope);
  Result<Value> EvalCompare(const Expr& e, Scope& scope);
  Result<Value> EvalOperator(const Expr& e, Scope& scope);

  // Appends to an output buffer within the output limit.
  Status Emit(std::string* out, std::string_view text, int line);
  // Adds "chat template line N: " to the first error of the render; the statuses that
  // carry it outward, and raise_exception's, pass unchanged.
  Status Fail(int line, const Status& status);
  // Checks a built value against kMaxValueDepth.
  Result<Value> Checked(int line, Value v);

  RenderLimits limits_;
  int depth_ = 0;
  uint64_t iterations_ = 0;
  bool error_reported_ = false;
  // Scopes in which macros were defined: kept for the whole render, since a macro holds
  // only a weak reference to its scope (a strong one would be a cycle through the scope's
  // variables).
  std::vector<std::shared_ptr<Scope>> macro_scopes_;
};

}  // namespace ckv::jinja
