// Builds the template tree from tokens, following Jinja2 3.1's grammar (operator precedence,
// tuples, filters and tests with their argument forms, the statement tags). Everything we do
// not support fails here, naming the construct and its line: unknown or unsupported tags,
// filters, tests and functions.
#pragma once

#include <memory>
#include <string_view>

#include "chat/jinja_ast.h"
#include "ckv/status.h"

namespace ckv::jinja {

Result<std::unique_ptr<TemplateAst>> ParseTemplate(std::string_view source);

}  // namespace ckv::jinja
