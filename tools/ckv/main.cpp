// ckv: the ContiguousKV command line.
#include <iostream>

#include "ckv/version.h"
#include "cli_common.h"

int main(int argc, char** argv) {
  CLI::App app{
      "ckv - ContiguousKV: prefix-KV-cache offloading engine for LLM serving on the CPU.\n"
      "Runs Qwen2/Qwen2.5 and Llama models from Hugging Face model directories."};
  app.require_subcommand(1);
  app.set_version_flag("--version",
                       std::string("ckv ") + ckv::Version() + " (commit " + ckv::GitCommit() + ")");
  std::vector<ckv::cli::Command> commands;
  ckv::cli::RegisterGenerate(app, commands);
  ckv::cli::RegisterTokenize(app, commands);
  ckv::cli::RegisterLogits(app, commands);
  ckv::cli::RegisterModel(app, commands);
  ckv::cli::RegisterCache(app, commands);
  ckv::cli::RegisterReprefill(app, commands);
  ckv::cli::RegisterEval(app, commands);
  ckv::cli::RegisterBench(app, commands);
  ckv::cli::RegisterServe(app, commands);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (auto& c : commands) {
    if (c.app->parsed()) return c.run();
  }
  std::cerr << app.help();
  return 2;
}
