// Shared pieces of the ckv subcommands: model loading, id lists, error exits.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ckv/model.h"
#include "ckv/status.h"

namespace ckv::cli {

// The bundled default model (used when --model is not given).
std::string DefaultModelDir();

// Prints "error: <status>" to stderr and returns exit code 1.
int Fail(const Status& status);

Result<std::unique_ptr<Model>> LoadModel(const std::string& dir, bool pack_weights = false);

// "auto" | "bf16" | "f32" (validated by the option).
KVPrecision ResolveKV(const std::string& name, const Model& model);

// Parses "1,2,3" (spaces allowed).
Result<std::vector<int32_t>> ParseIdList(const std::string& text);

// Each subcommand registers itself on the app and sets `run` to its action.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

void RegisterGenerate(CLI::App& root, std::vector<Command>& out);
void RegisterTokenize(CLI::App& root, std::vector<Command>& out);
void RegisterLogits(CLI::App& root, std::vector<Command>& out);
void RegisterModel(CLI::App& root, std::vector<Command>& out);
void RegisterBench(CLI::App& root, std::vector<Command>& out);

}  // namespace ckv::cli
