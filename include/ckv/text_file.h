// Small whole-file text reads and writes (configs, templates, benchmark reports), with the
// failure named.
#pragma once

#include <string>

#include "ckv/status.h"

namespace ckv {

// Replaces `path` with `text`; IOError naming the path if it cannot be written completely.
Status WriteTextFile(const std::string& path, const std::string& text);

// The whole file; NotFound "cannot read PATH" when it cannot be opened.
Result<std::string> ReadTextFile(const std::string& path);

}  // namespace ckv
