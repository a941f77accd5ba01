// How the CLI loads a model: --mmap-weights (map instead of reading resident) on every command
// that runs one, with the same answers.
#include <gtest/gtest.h>

#include <string>

#include "test_util.h"

namespace ckv {
namespace {

using test::RunCli;

TEST(CliModelLoad, MappedWeightsGiveTheSameTokens) {
  const std::string args = "generate --prompt 'Once upon a time' --max-tokens 12";
  const auto resident = RunCli(args);
  const auto mapped = RunCli(args + " --mmap-weights");
  ASSERT_EQ(resident.exit_code, 0) << resident.output;
  ASSERT_EQ(mapped.exit_code, 0) << mapped.output;
  EXPECT_EQ(mapped.output, resident.output);
  const auto info = RunCli("model info");
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("\"num_hidden_layers\""), std::string::npos) << info.output;
}

TEST(CliModelLoad, EveryCommandThatRunsAModelTakesTheFlag) {
  for (const char* cmd : {"generate", "logits", "reprefill", "serve", "cache put", "eval quality",
                          "eval perplexity", "eval induction", "bench model", "bench reprefill"}) {
    const auto help = RunCli(std::string(cmd) + " --help");
    EXPECT_EQ(help.exit_code, 0) << cmd << ": " << help.output;
    EXPECT_NE(help.output.find("--mmap-weights"), std::string::npos) << cmd;
  }
}

// The server takes --pack-weights (the GEMM copy), and bench serve gives it to the servers it
// starts; a running server (--port) has its own.
TEST(CliModelLoad, ServeAndItsBenchTakePackWeights) {
  for (const char* cmd : {"serve", "bench serve"}) {
    const auto help = RunCli(std::string(cmd) + " --help");
    EXPECT_NE(help.output.find("--pack-weights"), std::string::npos) << cmd;
  }
  const auto refused =
      RunCli("bench serve --port 1 --systems contiguouskv:0.1 --pack-weights --out " +
             test::MakeTempDir("bench-serve-pack"));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("--pack-weights is for the servers bench serve starts"),
            std::string::npos)
      << refused.output;
}

}  // namespace
}  // namespace ckv
