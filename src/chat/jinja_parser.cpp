#include "chat/jinja_parser.h"

#include <initializer_list>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_builtins.h"
#include "chat/jinja_lexer.h"

namespace ckv::jinja {
namespace {

// Nesting of expressions and blocks; real templates stay far below. Bounds the parser's
// (and later the renderer's) native stack on hostile input like "((((((...".
constexpr int kMaxNesting = 100;

// Tags that close or continue a block: seen where they do not belong, they get a message
// naming what was open.
constexpr std::string_view kEndTags[] = {"endif",   "endfor",        "else",    "elif",
                                         "endset",  "endmacro",      "endcall", "endfilter",
                                         "endwith", "endgeneration", "endraw",  "endblock"};
// Jinja tags that need a loader or autoescaping; a chat template has neither.
constexpr std::string_view kUnsupportedTags[] = {"extends", "block", "include",
                                                 "import",  "from",  "autoescape"};

std::string Describe(const Token& t) {
  switch (t.kind) {
    case TokenKind::kText:
      return "template text";
    case TokenKind::kVarBegin:
      return "'{{'";
    case TokenKind::kVarEnd:
      return "'}}'";
    case TokenKind::kBlockBegin:
      return "'{%'";
    case TokenKind::kBlockEnd:
      return "'%}'";
    case TokenKind::kName:
    case TokenKind::kOperator:
      return "'" + t.text + "'";
    case TokenKind::kString:
      return "string literal";
    case TokenKind::kInt:
      return "integer";
    case TokenKind::kFloat:
      return "float";
    case TokenKind::kEof:
      return "end of template";
  }
  return "token";
}

ExprPtr MakeExpr(ExprKind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

ExprPtr MakeLiteral(Value v, int line) {
  ExprPtr e = MakeExpr(ExprKind::kLiteral, line);
  e->literal = std::move(v);
  return e;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  Result<std::unique_ptr<TemplateAst>> Run() {
    auto ast = std::make_unique<TemplateAst>();
    CKV_ASSIGN_OR_RETURN(ast->body, Subparse({}));
    CKV_RETURN_IF_ERROR(CheckCalledNames());
    return ast;
  }

 private:
  using TagParser = Result<NodePtr> (Parser::*)();
  struct TagDef {
    std::string_view name;
    TagParser parse;
  };
  static const TagDef kTags[];
  static const TagDef* FindTag(std::string_view name);

  // An open block, for messages: its tag and line.
  struct OpenBlock {
    std::string_view tag;
    int line;
  };

  // ---- token stream ----
  const Token& Cur() const { return toks_[i_]; }
  const Token& Peek() const { return toks_[i_ + 1 < toks_.size() ? i_ + 1 : i_]; }
  void Advance() {
    if (i_ + 1 < toks_.size()) ++i_;
  }
  bool IsOp(std::string_view op) const {
    return Cur().kind == TokenKind::kOperator && Cur().text == op;
  }
  bool IsName(std::string_view name) const {
    return Cur().kind == TokenKind::kName && Cur().text == name;
  }
  bool SkipOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Advance();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(name)) return false;
    Advance();
    return true;
  }
  Status Unexpected(std::string_view expected) const {
    return TemplateError(Cur().line,
                         "expected " + std::string(expected) + ", got " + Describe(Cur()));
  }
  Status ExpectOp(std::string_view op) {
    if (SkipOp(op)) return Status::OK();
    return Unexpected("'" + std::string(op) + "'");
  }
  Status ExpectKind(TokenKind kind, std::string_view what) {
    if (Cur().kind != kind) return Unexpected(what);
    Advance();
    return Status::OK();
  }
  Result<std::string> ExpectName() {
    if (Cur().kind != TokenKind::kName) return Unexpected("a name");
    std::string name = Cur().text;
    Advance();
    return name;
  }
  Status CheckDepth() const {
    if (depth_ > kMaxNesting) {
      return TemplateUnsupported(
          Cur().line, "template nesting deeper than " + std::to_string(kMaxNesting) + " levels");
    }
    return Status::OK();
  }

  // ---- statements ----

  // Parses until a block tag named in `ends` (left as the current token) or the end.
  Result<NodeList> Subparse(std::vector<std::string_view> ends) {
    DepthGuard guard(&depth_);
    CKV_RETURN_IF_ERROR(CheckDepth());
    NodeList body;
    while (Cur().kind != TokenKind::kEof) {
      const Token& t = Cur();
      if (t.kind == TokenKind::kText) {
        auto node = std::make_unique<Node>();
        node->kind = NodeKind::kText;
        node->line = t.line;
        node->text = t.text;
        body.push_back(std::move(node));
        Advance();
      } else if (t.kind == TokenKind::kVarBegin) {
        Advance();
        auto node = std::make_unique<Node>();
        node->kind = NodeKind::kOutput;
        node->line = Cur().line;
        CKV_ASSIGN_OR_RETURN(node->expr, ParseTuple(true));
        CKV_RETURN_IF_ERROR(ExpectKind(TokenKind::kVarEnd, "'}}'"));
        body.push_back(std::move(node));
      } else if (t.kind == TokenKind::kBlockBegin) {
        Advance();
        if (Cur().kind == TokenKind::kName) {
          for (std::string_view end : ends) {
            if (Cur().text == end) return body;
          }
        }
        CKV_ASSIGN_OR_RETURN(NodePtr node, ParseStatement());
        if (node) body.push_back(std::move(node));
        CKV_RETURN_IF_ERROR(ExpectKind(TokenKind::kBlockEnd, "end of statement '%}'"));
      } else {
        return Unexpected("template text, '{{' or '{%'");
      }
    }
    if (!ends.empty()) {
      const OpenBlock& open = open_.back();
      return TemplateError(Cur().line, "unexpected end of template: '" + std::string(open.tag) +
                                           "' from line " + std::to_string(open.line) +
                                           " is not closed (expected 'end" + std::string(open.tag) +
                                           "')");
    }
    return body;
  }

  // `{% tag ... %}` body: expects the opening tag's '%}', then parses to one of `ends`.
  Result<NodeList> ParseBody(std::string_view tag, int line, std::vector<std::string_view> ends) {
    CKV_RETURN_IF_ERROR(ExpectKind(TokenKind::kBlockEnd, "end of statement '%}'"));
    open_.push_back({tag, line});
    Result<NodeList> body = Subparse(std::move(ends));
    open_.pop_back();
    return body;
  }

  Result<NodePtr> ParseStatement() {
    if (Cur().kind != TokenKind::kName) return Unexpected("a tag name");
    const std::string& name = Cur().text;
    if (const TagDef* tag = FindTag(name)) return (this->*tag->parse)();
    for (std::string_view tag : kUnsupportedTags) {
      if (tag == name) return TemplateUnsupported(Cur().line, "unsupported tag '" + name + "'");
    }
    for (std::string_view end : kEndTags) {
      if (end != name) continue;
      std::string msg = "unexpected tag '" + name + "'";
      if (!open_.empty()) {
        msg += " (the innermost open block is '" + std::string(open_.back().tag) + "' from line " +
               std::to_string(open_.back().line) + ")";
      }
      return TemplateError(Cur().line, msg);
    }
    return TemplateUnsupported(Cur().line, "unknown tag '" + name + "'");
  }

  NodePtr NewNode(NodeKind kind, int line) {
    auto node = std::make_unique<Node>();
    node->kind = kind;
    node->line = line;
    return node;
  }

  Result<NodePtr> ParseIf() {
    const int line = Cur().line;
    Advance();
    NodePtr node = NewNode(NodeKind::kIf, line);
    while (true) {
      IfBranch branch;
      CKV_ASSIGN_OR_RETURN(branch.cond, ParseTuple(false));
      CKV_ASSIGN_OR_RETURN(branch.body, ParseBody("if", line, {"elif", "else", "endif"}));
      node->branches.push_back(std::move(branch));
      const std::string tag = Cur().text;
      Advance();
      if (tag == "elif") continue;
      if (tag == "else") {
        CKV_ASSIGN_OR_RETURN(node->else_body, ParseBody("if", line, {"endif"}));
        Advance();
      }
      return node;
    }
  }

  Result<NodePtr> ParseFor() {
    const int line = Cur().line;
    Advance();
    NodePtr node = NewNode(NodeKind::kFor, line);
    CKV_ASSIGN_OR_RETURN(node->target, ParseAssignTarget("in"));
    if (!SkipName("in")) return Unexpected("'in'");
    CKV_ASSIGN_OR_RETURN(node->expr, ParseTuple(false, "recursive"));
    if (SkipName("if")) {
      CKV_ASSIGN_OR_RETURN(node->cond, ParseExpression(true));
    }
    if (IsName("recursive"))
      return TemplateUnsupported(Cur().line, "unsupported recursive for loop");
    ++loop_depth_;
    Result<NodeList> body = ParseBody("for", line, {"endfor", "else"});
    --loop_depth_;
    if (!body.ok()) return body.status();
    node->body = std::move(body).value();
    const bool has_else = Cur().text == "else";
    Advance();
    if (has_else) {
      CKV_ASSIGN_OR_RETURN(node->else_body, ParseBody("for", line, {"endfor"}));
      Advance();
    }
    return node;
  }

  Result<NodePtr> ParseSet() {
    const int line = Cur().line;
    Advance();
    NodePtr node = NewNode(NodeKind::kSet, line);
    if (Cur().kind == TokenKind::kName && Peek().kind == TokenKind::kOperator &&
        Peek().text == ".") {
      node->target.name = Cur().text;
      Advance();
      Advance();
      CKV_ASSIGN_OR_RETURN(node->ns_attr, ExpectName());
    } else {
      CKV_ASSIGN_OR_RETURN(node->target, ParseAssignTarget({}));
    }
    if (SkipOp("=")) {
      CKV_ASSIGN_OR_RETURN(node->expr, ParseTuple(true));
      return node;
    }
    node->kind = NodeKind::kSetBlock;
    if (IsOp("|")) {
      CKV_ASSIGN_OR_RETURN(node->expr, ParseFilter(nullptr, false));
    }
    CKV_ASSIGN_OR_RETURN(node->body, ParseBody("set", line, {"endset"}));
    Advance();
    return node;
  }

  Result<NodePtr> ParseMacro() {
    const int line = Cur().line;
    Advance();
    NodePtr node = NewNode(NodeKind::kMacro, line);
    CKV_ASSIGN_OR_RETURN(node->text, ExpectName());
    callable_names_.insert(node->text);
    CKV_RETURN_IF_ERROR(ParseSignature(node.get()));
    CKV_RETURN_IF_ERROR(ParseMacroBody(node.get(), "macro", "endmacro"));
    return node;
  }

  // A macro body (or a call block's, which becomes `caller`): loop controls do not reach
  // through it, and its uses of varargs / kwargs / caller are recorded.
  Status ParseMacroBody(Node* node, std::string_view tag, std::string_view end) {
    const int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    macros_.push_back(node);
    Result<NodeList> body = ParseBody(tag, node->line, {end});
    macros_.pop_back();
    loop_depth_ = saved_loop_depth;
    if (!body.ok()) return body.status();
    node->body = std::move(body).value();
    Advance();
    return Status::OK();
  }

  Status ParseSignature(Node* node) {
    CKV_RETURN_IF_ERROR(ExpectOp("("));
    while (!IsOp(")")) {
      if (!node->params.empty()) CKV_RETURN_IF_ERROR(ExpectOp(","));
      Param param;
      CKV_ASSIGN_OR_RETURN(param.name, ExpectName());
      callable_names_.insert(param.name);
      if (SkipOp("=")) {
        CKV_ASSIGN_OR_RETURN(param.default_value, ParseExpression(true));
      } else if (!node->params.empty() && node->params.back().default_value) {
        return TemplateError(Cur().line, "non-default argument follows default argument");
      }
      node->params.push_back(std::move(param));
    }
    return ExpectOp(")");
  }

  Result<NodePtr> ParseCallBlock() {
    const int line = Cur().line;
    Advance();
    NodePtr node = NewNode(NodeKind::kCallBlock, line);
    if (IsOp("(")) CKV_RETURN_IF_ERROR(ParseSignature(node.get()));
    CKV_ASSIGN_OR_RETURN(node->expr, ParseExpression(true));
    if (node->expr->kind != ExprKind::kCall)
      return TemplateError(line, "expected a call in 'call'");
    CKV_RETURN_IF_ERROR(ParseMacroBody(node.get(), "call", "endcall"));
    return node;
  }

  Result<NodePtr> ParseFilterBlock() {
    const int line = Cur().line;
    Advance();
    NodePtr node = NewNode(NodeKind::kFilterBlock, line);
    CKV_ASSIGN_OR_RETURN(node->expr, ParseFilter(nullptr, true));
    CKV_ASSIGN_OR_RETURN(node->body, ParseBody("filter", line, {"endfilter"}));
    Advance();
    return node;
  }

  Result<NodePtr> ParseWith() {
    const int line = Cur().line;
    Advance();
    NodePtr node = NewNode(NodeKind::kWith, line);
    while (Cur().kind != TokenKind::kBlockEnd) {
      if (!node->with_vars.empty()) CKV_RETURN_IF_ERROR(ExpectOp(","));
      CKV_ASSIGN_OR_RETURN(Target target, ParseAssignTarget({}));
      CKV_RETURN_IF_ERROR(ExpectOp("="));
      CKV_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      node->with_vars.emplace_back(std::move(target), std::move(value));
    }
    CKV_ASSIGN_OR_RETURN(node->body, ParseBody("with", line, {"endwith"}));
    Advance();
    return node;
  }

  // Hugging Face's AssistantTracker extension: {% generation %} marks assistant text for
  // the assistant-token mask; rendering it is rendering its body, which the extension
  // compiles to a call block (its own scope, loop controls do not reach through it).
  Result<NodePtr> ParseGeneration() {
    const int line = Cur().line;
    Advance();
    NodePtr node = NewNode(NodeKind::kScope, line);
    CKV_RETURN_IF_ERROR(ParseMacroBody(node.get(), "generation", "endgeneration"));
    return node;
  }

  Result<NodePtr> ParseLoopControl() {
    const int line = Cur().line;
    const std::string tag = Cur().text;
    Advance();
    if (loop_depth_ == 0) return TemplateError(line, "'" + tag + "' outside a for loop");
    return NewNode(tag == "break" ? NodeKind::kBreak : NodeKind::kContinue, line);
  }

  Result<NodePtr> ParsePrint() {
    const int line = Cur().line;
    Advance();
    NodePtr node = NewNode(NodeKind::kOutput, line);
    CKV_ASSIGN_OR_RETURN(node->expr, ParseTuple(true));
    return node;
  }

  // A name or a tuple of names, as after `for` / `set` / `with`.
  Result<Target> ParseAssignTarget(std::string_view extra_end) {
    std::vector<Target> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) CKV_RETURN_IF_ERROR(ExpectOp(","));
      if (IsTupleEnd(extra_end)) break;
      Target item;
      if (SkipOp("(")) {
        CKV_ASSIGN_OR_RETURN(item, ParseAssignTarget({}));
        CKV_RETURN_IF_ERROR(ExpectOp(")"));
      } else {
        if (Cur().kind != TokenKind::kName) return Unexpected("a name to assign to");
        item.name = Cur().text;
        static constexpr std::string_view kConstants[] = {"true", "false", "none",
                                                          "True", "False", "None"};
        for (std::string_view c : kConstants) {
          if (item.name == c)
            return TemplateError(Cur().line, "cannot assign to '" + item.name + "'");
        }
        callable_names_.insert(item.name);
        Advance();
      }
      items.push_back(std::move(item));
      if (!IsOp(",")) break;
      is_tuple = true;
    }
    if (!is_tuple) {
      if (items.empty()) return Unexpected("a name to assign to");
      return std::move(items[0]);
    }
    Target target;
    target.is_tuple = true;
    target.items = std::move(items);
    return target;
  }

  // ---- expressions ----

  bool IsTupleEnd(std::string_view extra_end) const {
    return Cur().kind == TokenKind::kVarEnd || Cur().kind == TokenKind::kBlockEnd || IsOp(")") ||
           (!extra_end.empty() && IsName(extra_end));
  }

  // Comma-separated expressions; one without a comma is itself, more make a tuple.
  Result<ExprPtr> ParseTuple(bool with_condexpr, std::string_view extra_end = {},
                             bool explicit_parens = false) {
    const int line = Cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) CKV_RETURN_IF_ERROR(ExpectOp(","));
      if (IsTupleEnd(extra_end)) break;
      CKV_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(with_condexpr));
      items.push_back(std::move(item));
      if (!IsOp(",")) break;
      is_tuple = true;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) return Unexpected("an expression");
    }
    ExprPtr tuple = MakeExpr(ExprKind::kTuple, line);
    tuple->args = std::move(items);
    return tuple;
  }

  Result<ExprPtr> ParseExpression(bool with_condexpr) {
    return with_condexpr ? ParseCondExpr() : ParseOr();
  }

  Result<ExprPtr> ParseCondExpr() {
    DepthGuard guard(&depth_);  // "a if x else b if y else ..." recurses here
    CKV_RETURN_IF_ERROR(CheckDepth());
    const int line = Cur().line;
    CKV_ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
    while (SkipName("if")) {
      ExprPtr node = MakeExpr(ExprKind::kCondExpr, line);
      CKV_ASSIGN_OR_RETURN(ExprPtr cond, ParseOr());
      ExprPtr otherwise;
      if (SkipName("else")) {
        CKV_ASSIGN_OR_RETURN(otherwise, ParseCondExpr());
      }
      node->args.push_back(std::move(cond));
      node->args.push_back(std::move(expr));
      node->args.push_back(std::move(otherwise));
      expr = std::move(node);
    }
    return expr;
  }

  Result<ExprPtr> ParseOr() {
    CKV_ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
    while (IsName("or")) {
      ExprPtr node = MakeExpr(ExprKind::kOr, Cur().line);
      Advance();
      CKV_ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
      node->args.push_back(std::move(left));
      node->args.push_back(std::move(right));
      left = std::move(node);
    }
    return left;
  }

  Result<ExprPtr> ParseAnd() {
    CKV_ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
    while (IsName("and")) {
      ExprPtr node = MakeExpr(ExprKind::kAnd, Cur().line);
      Advance();
      CKV_ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
      node->args.push_back(std::move(left));
      node->args.push_back(std::move(right));
      left = std::move(node);
    }
    return left;
  }

  Result<ExprPtr> ParseNot() {
    if (!IsName("not")) return ParseCompare();
    DepthGuard guard(&depth_);
    CKV_RETURN_IF_ERROR(CheckDepth());
    ExprPtr node = MakeExpr(ExprKind::kNot, Cur().line);
    Advance();
    CKV_ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
    node->args.push_back(std::move(operand));
    return node;
  }

  Result<ExprPtr> ParseCompare() {
    const int line = Cur().line;
    CKV_ASSIGN_OR_RETURN(ExprPtr left, ParseMath1());
    ExprPtr node;
    while (true) {
      CompareOp op;
      if (IsOp("==")) {
        op = CompareOp::kEq;
      } else if (IsOp("!=")) {
        op = CompareOp::kNe;
      } else if (IsOp("<")) {
        op = CompareOp::kLt;
      } else if (IsOp("<=")) {
        op = CompareOp::kLe;
      } else if (IsOp(">")) {
        op = CompareOp::kGt;
      } else if (IsOp(">=")) {
        op = CompareOp::kGe;
      } else if (IsName("in")) {
        op = CompareOp::kIn;
      } else if (IsName("not") && Peek().kind == TokenKind::kName && Peek().text == "in") {
        op = CompareOp::kNotIn;
        Advance();
      } else {
        break;
      }
      Advance();
      CKV_ASSIGN_OR_RETURN(ExprPtr right, ParseMath1());
      if (!node) {
        node = MakeExpr(ExprKind::kCompare, line);
        node->args.push_back(std::move(left));
      }
      node->cmp_ops.push_back(op);
      node->args.push_back(std::move(right));
    }
    return node ? std::move(node) : std::move(left);
  }

  Result<ExprPtr> ParseBinaryLevel(
      Result<ExprPtr> (Parser::*next)(),
      std::initializer_list<std::pair<std::string_view, BinaryOp>> ops) {
    CKV_ASSIGN_OR_RETURN(ExprPtr left, (this->*next)());
    while (true) {
      const std::pair<std::string_view, BinaryOp>* match = nullptr;
      for (const auto& op : ops) {
        if (IsOp(op.first)) match = &op;
      }
      if (match == nullptr) return left;
      ExprPtr node = MakeExpr(ExprKind::kBinary, Cur().line);
      node->bin_op = match->second;
      Advance();
      CKV_ASSIGN_OR_RETURN(ExprPtr right, (this->*next)());
      node->args.push_back(std::move(left));
      node->args.push_back(std::move(right));
      left = std::move(node);
    }
  }

  Result<ExprPtr> ParseMath1() {
    return ParseBinaryLevel(&Parser::ParseConcat, {{"+", BinaryOp::kAdd}, {"-", BinaryOp::kSub}});
  }

  Result<ExprPtr> ParseConcat() {
    const int line = Cur().line;
    CKV_ASSIGN_OR_RETURN(ExprPtr first, ParseMath2());
    if (!IsOp("~")) return first;
    ExprPtr node = MakeExpr(ExprKind::kConcat, line);
    node->args.push_back(std::move(first));
    while (SkipOp("~")) {
      CKV_ASSIGN_OR_RETURN(ExprPtr next, ParseMath2());
      node->args.push_back(std::move(next));
    }
    return node;
  }

  Result<ExprPtr> ParseMath2() {
    return ParseBinaryLevel(&Parser::ParsePow, {{"*", BinaryOp::kMul},
                                                {"/", BinaryOp::kDiv},
                                                {"//", BinaryOp::kFloorDiv},
                                                {"%", BinaryOp::kMod}});
  }

  Result<ExprPtr> ParsePow() {
    return ParseBinaryLevel(&Parser::ParseUnaryWithFilter, {{"**", BinaryOp::kPow}});
  }

  Result<ExprPtr> ParseUnaryWithFilter() { return ParseUnary(true); }

  // Jinja binds unary minus tighter than filters and **: "-x|abs" is "(-x)|abs".
  Result<ExprPtr> ParseUnary(bool with_filter) {
    DepthGuard guard(&depth_);
    CKV_RETURN_IF_ERROR(CheckDepth());
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      node = MakeExpr(IsOp("-") ? ExprKind::kNeg : ExprKind::kPos, Cur().line);
      Advance();
      CKV_ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(false));
      node->args.push_back(std::move(operand));
    } else {
      CKV_ASSIGN_OR_RETURN(node, ParsePrimary());
    }
    CKV_ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
    if (with_filter) {
      CKV_ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
    }
    return node;
  }

  Result<ExprPtr> ParsePrimary() {
    const Token& t = Cur();
    const int line = t.line;
    switch (t.kind) {
      case TokenKind::kName: {
        ExprPtr node;
        if (t.text == "true" || t.text == "True") {
          node = MakeLiteral(Value::Bool(true), line);
        } else if (t.text == "false" || t.text == "False") {
          node = MakeLiteral(Value::Bool(false), line);
        } else if (t.text == "none" || t.text == "None") {
          node = MakeLiteral(Value::None(), line);
        } else {
          node = MakeExpr(ExprKind::kName, line);
          node->name = t.text;
          NoteNameUse(t.text);
        }
        Advance();
        return node;
      }
      case TokenKind::kString: {
        std::string text;
        while (Cur().kind == TokenKind::kString) {  // adjacent literals concatenate
          text += Cur().text;
          Advance();
        }
        return MakeLiteral(Value::String(std::move(text)), line);
      }
      case TokenKind::kInt: {
        ExprPtr node = MakeLiteral(Value::Int(t.int_value), line);
        Advance();
        return node;
      }
      case TokenKind::kFloat: {
        ExprPtr node = MakeLiteral(Value::Float(t.float_value), line);
        Advance();
        return node;
      }
      case TokenKind::kOperator:
        if (SkipOp("(")) {
          CKV_ASSIGN_OR_RETURN(ExprPtr node, ParseTuple(true, {}, true));
          CKV_RETURN_IF_ERROR(ExpectOp(")"));
          return node;
        }
        if (IsOp("[")) return ParseList();
        if (IsOp("{")) return ParseDict();
        break;
      default:
        break;
    }
    return TemplateError(line, "unexpected " + Describe(t) + " in an expression");
  }

  void NoteNameUse(const std::string& name) {
    if (macros_.empty()) return;
    Node* macro = macros_.back();
    if (name == "varargs") macro->uses_varargs = true;
    if (name == "kwargs") macro->uses_kwargs = true;
    if (name == "caller") macro->uses_caller = true;
  }

  Result<ExprPtr> ParseList() {
    ExprPtr node = MakeExpr(ExprKind::kList, Cur().line);
    Advance();
    while (!IsOp("]")) {
      if (!node->args.empty()) CKV_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp("]")) break;
      CKV_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(true));
      node->args.push_back(std::move(item));
    }
    CKV_RETURN_IF_ERROR(ExpectOp("]"));
    return node;
  }

  Result<ExprPtr> ParseDict() {
    ExprPtr node = MakeExpr(ExprKind::kDict, Cur().line);
    Advance();
    while (!IsOp("}")) {
      if (!node->args.empty()) CKV_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp("}")) break;
      CKV_ASSIGN_OR_RETURN(ExprPtr key, ParseExpression(true));
      CKV_RETURN_IF_ERROR(ExpectOp(":"));
      CKV_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      node->args.push_back(std::move(key));
      node->args.push_back(std::move(value));
    }
    CKV_RETURN_IF_ERROR(ExpectOp("}"));
    return node;
  }

  Result<ExprPtr> ParsePostfix(ExprPtr node) {
    while (true) {
      if (IsOp(".") || IsOp("[")) {
        CKV_ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node)));
      } else if (IsOp("(")) {
        CKV_ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  Result<ExprPtr> ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        CKV_ASSIGN_OR_RETURN(node, ParseFilter(std::move(node), false));
      } else if (IsName("is")) {
        CKV_ASSIGN_OR_RETURN(node, ParseTest(std::move(node)));
      } else if (IsOp("(")) {
        CKV_ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  Result<ExprPtr> ParseSubscript(ExprPtr node) {
    const int line = Cur().line;
    if (SkipOp(".")) {
      if (Cur().kind == TokenKind::kName) {
        ExprPtr attr = MakeExpr(ExprKind::kGetAttr, line);
        attr->name = Cur().text;
        attr->args.push_back(std::move(node));
        Advance();
        return attr;
      }
      if (Cur().kind != TokenKind::kInt) return Unexpected("a name or number after '.'");
      ExprPtr item = MakeExpr(ExprKind::kGetItem, line);
      item->args.push_back(std::move(node));
      item->args.push_back(MakeLiteral(Value::Int(Cur().int_value), line));
      Advance();
      return item;
    }
    Advance();  // '['
    std::vector<ExprPtr> keys;
    ExprPtr slice;
    while (!IsOp("]")) {
      if (!keys.empty() || slice) CKV_RETURN_IF_ERROR(ExpectOp(","));
      CKV_ASSIGN_OR_RETURN(ExprPtr start,
                           IsOp(":") ? Result<ExprPtr>(ExprPtr()) : ParseExpression(true));
      if (!IsOp(":")) {
        if (slice) return TemplateUnsupported(line, "unsupported subscript with slices and items");
        keys.push_back(std::move(start));
        continue;
      }
      if (slice || !keys.empty()) {
        return TemplateUnsupported(line, "unsupported subscript with several slices");
      }
      Advance();  // ':'
      slice = MakeExpr(ExprKind::kSlice, line);
      slice->args.push_back(nullptr);  // the object, filled in below
      slice->args.push_back(std::move(start));
      ExprPtr stop;
      ExprPtr step;
      if (!IsOp(":") && !IsOp("]") && !IsOp(",")) {
        CKV_ASSIGN_OR_RETURN(stop, ParseExpression(true));
      }
      if (SkipOp(":") && !IsOp("]") && !IsOp(",")) {
        CKV_ASSIGN_OR_RETURN(step, ParseExpression(true));
      }
      slice->args.push_back(std::move(stop));
      slice->args.push_back(std::move(step));
    }
    CKV_RETURN_IF_ERROR(ExpectOp("]"));
    if (slice) {
      slice->args[0] = std::move(node);
      return slice;
    }
    if (keys.empty()) return TemplateError(line, "expected a subscript expression");
    ExprPtr item = MakeExpr(ExprKind::kGetItem, line);
    item->args.push_back(std::move(node));
    if (keys.size() == 1) {
      item->args.push_back(std::move(keys[0]));
    } else {
      ExprPtr tuple = MakeExpr(ExprKind::kTuple, line);
      tuple->args = std::move(keys);
      item->args.push_back(std::move(tuple));
    }
    return item;
  }

  // (positional..., name=value...) into node->args (after what is there) and node->kwargs.
  Status ParseCallArgs(Expr* node) {
    CKV_RETURN_IF_ERROR(ExpectOp("("));
    bool first = true;
    while (!IsOp(")")) {
      if (!first) {
        CKV_RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp(")")) break;  // trailing comma
      }
      first = false;
      if (IsOp("*") || IsOp("**")) {
        return TemplateUnsupported(Cur().line, "unsupported '*' / '**' argument unpacking");
      }
      if (Cur().kind == TokenKind::kName && Peek().kind == TokenKind::kOperator &&
          Peek().text == "=") {
        std::string name = Cur().text;
        Advance();
        Advance();
        CKV_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
        node->kwargs.emplace_back(std::move(name), std::move(value));
        continue;
      }
      if (!node->kwargs.empty()) {
        return TemplateError(Cur().line, "positional argument follows keyword argument");
      }
      CKV_ASSIGN_OR_RETURN(ExprPtr arg, ParseExpression(true));
      node->args.push_back(std::move(arg));
    }
    return ExpectOp(")");
  }

  Result<ExprPtr> ParseCall(ExprPtr callee) {
    ExprPtr node = MakeExpr(ExprKind::kCall, Cur().line);
    if (callee->kind == ExprKind::kName) called_names_.emplace_back(callee->name, node->line);
    node->args.push_back(std::move(callee));
    CKV_RETURN_IF_ERROR(ParseCallArgs(node.get()));
    return node;
  }

  Result<std::string> ParseDottedName() {
    CKV_ASSIGN_OR_RETURN(std::string name, ExpectName());
    while (SkipOp(".")) {
      CKV_ASSIGN_OR_RETURN(std::string part, ExpectName());
      name += "." + part;
    }
    return name;
  }

  // `| name(args)` repeated; `start_inline` when the first filter has no '|' ({% filter %}).
  Result<ExprPtr> ParseFilter(ExprPtr node, bool start_inline) {
    while (IsOp("|") || start_inline) {
      if (!start_inline) Advance();
      start_inline = false;
      const int line = Cur().line;
      CKV_ASSIGN_OR_RETURN(std::string name, ParseDottedName());
      const FilterDef* def = FindFilter(name);
      if (def == nullptr) {
        return TemplateUnsupported(
            line, (IsUnsupportedJinjaFilter(name) ? "unsupported filter '" : "unknown filter '") +
                      name + "'");
      }
      ExprPtr filter = MakeExpr(ExprKind::kFilter, line);
      filter->name = name;
      filter->filter = def;
      filter->args.push_back(std::move(node));
      if (IsOp("(")) CKV_RETURN_IF_ERROR(ParseCallArgs(filter.get()));
      node = std::move(filter);
    }
    return node;
  }

  Result<ExprPtr> ParseTest(ExprPtr node) {
    const int line = Cur().line;
    Advance();  // is
    const bool negated = SkipName("not");
    CKV_ASSIGN_OR_RETURN(std::string name, ParseDottedName());
    const TestDef* def = FindTest(name);
    if (def == nullptr) {
      return TemplateUnsupported(
          line,
          (IsUnsupportedJinjaTest(name) ? "unsupported test '" : "unknown test '") + name + "'");
    }
    ExprPtr test = MakeExpr(ExprKind::kTest, line);
    test->name = name;
    test->test = def;
    test->args.push_back(std::move(node));
    const TokenKind k = Cur().kind;
    if (IsOp("(")) {
      CKV_RETURN_IF_ERROR(ParseCallArgs(test.get()));
    } else if ((k == TokenKind::kName || k == TokenKind::kString || k == TokenKind::kInt ||
                k == TokenKind::kFloat || IsOp("[") || IsOp("{")) &&
               !IsName("else") && !IsName("or") && !IsName("and")) {
      // Jinja's one-argument form without parentheses: `x is divisibleby 3`.
      if (IsName("is")) return TemplateError(Cur().line, "tests cannot be chained with 'is'");
      CKV_ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
      CKV_ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
      test->args.push_back(std::move(arg));
    }
    if (!negated) return test;
    ExprPtr neg = MakeExpr(ExprKind::kNot, line);
    neg->args.push_back(std::move(test));
    return neg;
  }

  // A call of a bare name must reach a global function, a macro, `caller`, or a variable
  // the template assigns (which may hold a macro); JSON inputs never hold callables.
  Status CheckCalledNames() const {
    for (const auto& [name, line] : called_names_) {
      if (FindGlobal(name) != nullptr || callable_names_.count(name) != 0 || name == "caller") {
        continue;
      }
      if (IsUnsupportedJinjaGlobal(name)) {
        return TemplateUnsupported(line, "unsupported function '" + name + "'");
      }
      if (name == "loop") return TemplateUnsupported(line, "unsupported recursive loop call");
      return TemplateUnsupported(line, "unknown function '" + name + "'");
    }
    return Status::OK();
  }

  std::vector<Token> toks_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<OpenBlock> open_;
  std::vector<Node*> macros_;
  std::set<std::string> callable_names_;
  std::vector<std::pair<std::string, int>> called_names_;
};

const Parser::TagDef Parser::kTags[] = {
    {"if", &Parser::ParseIf},
    {"for", &Parser::ParseFor},
    {"set", &Parser::ParseSet},
    {"macro", &Parser::ParseMacro},
    {"call", &Parser::ParseCallBlock},
    {"filter", &Parser::ParseFilterBlock},
    {"with", &Parser::ParseWith},
    {"print", &Parser::ParsePrint},
    {"break", &Parser::ParseLoopControl},
    {"continue", &Parser::ParseLoopControl},
    {"generation", &Parser::ParseGeneration},
};

const Parser::TagDef* Parser::FindTag(std::string_view name) {
  for (const TagDef& tag : kTags) {
    if (tag.name == name) return &tag;
  }
  return nullptr;
}

}  // namespace

Result<std::unique_ptr<TemplateAst>> ParseTemplate(std::string_view source) {
  CKV_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source));
  return Parser(std::move(tokens)).Run();
}

}  // namespace ckv::jinja
