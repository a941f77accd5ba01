// Paths to the bundled models and to the reference data the tests use (tests/data).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ckv/model.h"
#include "ckv/prefix_store.h"

namespace ckv::test {

// Repository root (compiled in).
std::string SourceDir();
// tests/data: golden files and texts, copied into the repository so that a clone with nothing
// beside it tests itself (see tests/data/README.md for their origin).
std::string TestDataDir();
// data/: the texts the product ships (the CLI's defaults) and the tests read.
std::string TextDataDir();
// The bundled default model.
std::string BundledModelDir();
// It, loaded; nullptr (and a test failure naming why) when it does not load.
std::unique_ptr<Model> LoadBundledModel();
// A Qwen2-architecture config of the given shape (vocabulary 1000), for tests that store or
// score KV without a model.
ModelConfig TinyConfig(int layers, int heads, int kv_heads, int head_dim);
// A fresh, empty temporary directory removed at process exit.
std::string MakeTempDir(const std::string& tag);
// data/tinystories.txt encoded (with BOS) by `model`'s tokenizer; empty (and a test failure)
// when it does not encode.
std::vector<int32_t> TinyStoriesIds(const Model& model);
// An empty prefix store in a fresh temporary directory, without fsync; nullptr (and a test
// failure naming why) when it does not open.
std::unique_ptr<PrefixStore> OpenTempStore(const std::string& tag);
// Whole file as a string; aborts the test on failure.
std::string ReadFileOrDie(const std::string& path);

struct CommandRun {
  int exit_code = -1;  // -1 when it did not exit normally
  std::string output;  // stdout and stderr together
};
// Runs a shell command line and collects its output.
CommandRun RunCommand(const std::string& command_line);
// Runs the ckv binary built with the tests: `ckv <args>`.
CommandRun RunCli(const std::string& args);

}  // namespace ckv::test
