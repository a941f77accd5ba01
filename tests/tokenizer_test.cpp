// Tokenizer tests: the golden tokenizations of the bundled Llama tokenizer (stories260k)
// and of the real Qwen2 tokenizer, decoding conventions, added-token flags, config
// handling and error reporting.
#include "ckv/tokenizer.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/tokenizer_pre_tokenizer.h"
#include "model/tokenizer_unicode.h"
#include "test_util.h"

namespace ckv {
namespace {

using nlohmann::json;

std::string StoriesDir() {
  return test::BundledModelDir();
}
std::string QwenRepoDir() {
  return test::SourceDir() + "/models/qwen2-tokenizer";
}

// The repository ships only tokenizer.json.gz (1.9 MB instead of 7 MB); the plain-JSON path is
// tested on a copy decompressed here with zlib, independently of the tokenizer's own reader.
std::string QwenPlainDir() {
  const std::string dir = test::MakeTempDir("qwen-plain");
  gzFile in = gzopen((QwenRepoDir() + "/tokenizer.json.gz").c_str(), "rb");
  EXPECT_NE(in, nullptr);
  if (in == nullptr) return dir;
  std::ofstream out(dir + "/tokenizer.json", std::ios::binary);
  std::vector<char> buf(1 << 16);
  int n = 0;
  while ((n = gzread(in, buf.data(), static_cast<unsigned>(buf.size()))) > 0)
    out.write(buf.data(), n);
  EXPECT_EQ(n, 0) << "gzread failed";
  gzclose(in);
  std::filesystem::copy_file(QwenRepoDir() + "/tokenizer_config.json",
                             dir + "/tokenizer_config.json");
  return dir;
}

json ReadJson(const std::string& path) {
  return json::parse(test::ReadFileOrDie(path));
}

std::unique_ptr<Tokenizer> LoadOrDie(const std::string& dir) {
  auto tok = Tokenizer::FromDirectory(dir);
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

std::vector<int32_t> Ids(const json& array) {
  return array.get<std::vector<int32_t>>();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

// Loading the tokenizers once per suite keeps the suite fast (Qwen's file is 7 MB).
class StoriesTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { tok_ = LoadOrDie(StoriesDir()).release(); }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  static Tokenizer* tok_;
};
Tokenizer* StoriesTokenizerTest::tok_ = nullptr;

TEST_F(StoriesTokenizerTest, Basics) {
  ASSERT_NE(tok_, nullptr);
  EXPECT_EQ(tok_->vocab_size(), 512);
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_EQ(tok_->eos_id(), 2);
  EXPECT_TRUE(tok_->IsSpecial(0));
  EXPECT_TRUE(tok_->IsSpecial(1));
  EXPECT_TRUE(tok_->IsSpecial(2));
  EXPECT_FALSE(tok_->IsSpecial(3));
  EXPECT_EQ(tok_->TokenString(13), "<0x0A>");
  EXPECT_EQ(tok_->TokenToId("<0x0A>"), 13);
  EXPECT_EQ(tok_->TokenToId("<s>"), 1);
  EXPECT_EQ(tok_->TokenToId("no such token"), std::nullopt);
  EXPECT_EQ(tok_->TokenString(512), "");
  EXPECT_EQ(tok_->TokenString(-1), "");
}

TEST_F(StoriesTokenizerTest, GoldenTokenize) {
  ASSERT_NE(tok_, nullptr);
  const json cases = ReadJson(test::TestDataDir() + "/stories260k/tokenize.json");
  ASSERT_EQ(cases.size(), 200u);
  int passed = 0;
  for (const json& c : cases) {
    const std::string text = c["text"];
    const auto expected = Ids(c["ids"]);
    auto ids = tok_->Encode(text, /*add_special_tokens=*/true);
    ASSERT_TRUE(ids.ok()) << ids.status().ToString();
    EXPECT_EQ(*ids, expected) << "text: " << json(text).dump();
    auto decoded = tok_->Decode(expected, /*skip_special_tokens=*/true);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(*decoded, text);
    passed += *ids == expected && *decoded == text;
  }
  EXPECT_EQ(passed, 200);
}

TEST_F(StoriesTokenizerTest, GoldenPromptsAndNllWindows) {
  ASSERT_NE(tok_, nullptr);
  for (const json& c : ReadJson(test::TestDataDir() + "/stories260k/greedy.json")) {
    auto ids = tok_->Encode(c["prompt"].get<std::string>(), true);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(*ids, Ids(c["prompt_ids"]));
    std::vector<int32_t> all = Ids(c["prompt_ids"]);
    for (int32_t id : Ids(c["generated_ids"])) all.push_back(id);
    auto text = tok_->Decode(all, true);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, c["text"].get<std::string>());
  }
  // nll.json: the whole TinyStories sample encoded as one string with BOS.
  const json nll = ReadJson(test::TestDataDir() + "/stories260k/nll.json");
  auto ids = tok_->Encode(test::ReadFileOrDie(test::TextDataDir() + "/tinystories.txt"), true);
  ASSERT_TRUE(ids.ok());
  for (const json& w : nll["windows"]) {
    const size_t offset =
        std::stoul(w["token_offset"].is_string() ? w["token_offset"].get<std::string>()
                                                 : std::to_string(w["token_offset"].get<int>()));
    const auto expected = Ids(w["ids"]);
    ASSERT_LE(offset + expected.size(), ids->size());
    EXPECT_EQ(std::vector<int32_t>(ids->begin() + offset, ids->begin() + offset + expected.size()),
              expected);
  }
}

TEST_F(StoriesTokenizerTest, SpecialTokensAndOptions) {
  ASSERT_NE(tok_, nullptr);
  EXPECT_EQ(*tok_->Encode("", true), std::vector<int32_t>{1});
  EXPECT_TRUE(tok_->Encode("", false)->empty());
  const auto hello = *tok_->Encode("Hello", false);
  ASSERT_FALSE(hello.empty());
  EXPECT_NE(hello[0], 1);
  // Special tokens written in the text are matched before normalization, so the text on
  // each side gets its own "▁" prefix, as in Hugging Face tokenizers.
  std::vector<int32_t> expected = {1};
  expected.insert(expected.end(), hello.begin(), hello.end());
  expected.push_back(2);
  expected.insert(expected.end(), hello.begin(), hello.end());
  EXPECT_EQ(*tok_->Encode("Hello</s>Hello", true), expected);
  EXPECT_EQ(*tok_->Decode(expected, true), "Hello Hello");
  EXPECT_EQ(*tok_->Decode(expected, false), "<s> Hello</s> Hello");
  // Lone byte-fallback tokens that are not valid UTF-8 decode to one U+FFFD each.
  const int32_t e2 = *tok_->TokenToId("<0xE2>"), x82 = *tok_->TokenToId("<0x82>");
  EXPECT_EQ(*tok_->Decode(std::vector<int32_t>{e2, x82}, true), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST_F(StoriesTokenizerTest, Errors) {
  ASSERT_NE(tok_, nullptr);
  auto bad = tok_->Encode("ok\xC3(", true);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("offset 2"), std::string::npos) << bad.status().message();
  EXPECT_FALSE(tok_->Encode("\xED\xA0\x80", true).ok());  // Encoded surrogate.
  EXPECT_FALSE(tok_->Encode("\xC0\x80", true).ok());      // Overlong.
  auto out_of_range = tok_->Decode(std::vector<int32_t>{5, 512}, false);
  ASSERT_FALSE(out_of_range.ok());
  EXPECT_EQ(out_of_range.status().code(), StatusCode::kOutOfRange);
  EXPECT_NE(out_of_range.status().message().find("512"), std::string::npos);
  EXPECT_FALSE(tok_->Decode(std::vector<int32_t>{-1}, false).ok());
}

class QwenTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    plain_ = LoadOrDie(QwenPlainDir()).release();
    gz_ = LoadOrDie(QwenRepoDir()).release();
  }
  static void TearDownTestSuite() {
    delete plain_;
    delete gz_;
    plain_ = gz_ = nullptr;
  }
  static json Golden() { return ReadJson(test::TestDataDir() + "/qwen2-tokenizer/tokenize.json"); }
  static Tokenizer* plain_;
  static Tokenizer* gz_;
};
Tokenizer* QwenTokenizerTest::plain_ = nullptr;
Tokenizer* QwenTokenizerTest::gz_ = nullptr;

TEST_F(QwenTokenizerTest, Basics) {
  ASSERT_NE(plain_, nullptr);
  EXPECT_EQ(plain_->vocab_size(), 151665);
  EXPECT_EQ(plain_->bos_id(), std::nullopt);
  EXPECT_EQ(plain_->eos_id(), 151645);  // <|im_end|>, from tokenizer_config.json.
  EXPECT_TRUE(plain_->IsSpecial(151643));
  EXPECT_FALSE(plain_->IsSpecial(151657));  // <tool_call> is added but not special.
  EXPECT_FALSE(plain_->IsSpecial(9707));
  EXPECT_EQ(plain_->TokenString(1879), "\xC4\xA0world");  // "Ġworld"
  EXPECT_EQ(plain_->TokenToId("<|im_start|>"), 151644);
  // No BOS even with add_special_tokens.
  EXPECT_EQ(*plain_->Encode("Hello world", true), (std::vector<int32_t>{9707, 1879}));
}

TEST_F(QwenTokenizerTest, GoldenEncodeDecode) {
  ASSERT_NE(plain_, nullptr);
  const json golden = Golden();
  int passed = 0;
  for (const json& c : golden["cases"]) {
    const std::string name = c["name"];
    const std::string text = c["text"];
    const auto expected = Ids(c["ids"]);
    auto ids = plain_->Encode(text, false);
    ASSERT_TRUE(ids.ok()) << name << ": " << ids.status().ToString();
    EXPECT_EQ(*ids, expected) << name << ": " << json(text).dump();
    bool tokens_ok = true;
    for (size_t i = 0; i < expected.size() && i < c["tokens"].size(); ++i) {
      tokens_ok &= plain_->TokenString(expected[i]) == c["tokens"][i].get<std::string>();
    }
    EXPECT_TRUE(tokens_ok) << name;
    auto decoded = plain_->Decode(expected, false);
    auto decoded_skip = plain_->Decode(expected, true);
    ASSERT_TRUE(decoded.ok() && decoded_skip.ok()) << name;
    EXPECT_EQ(*decoded, c["decoded"].get<std::string>()) << name;
    EXPECT_EQ(*decoded_skip, c["decoded_skip_special"].get<std::string>()) << name;
    passed += *ids == expected && tokens_ok && *decoded == c["decoded"] &&
              *decoded_skip == c["decoded_skip_special"];
  }
  EXPECT_EQ(passed, static_cast<int>(golden["cases"].size()));
  EXPECT_EQ(golden["cases"].size(), 401u);
}

TEST_F(QwenTokenizerTest, GoldenDecodeCases) {
  ASSERT_NE(plain_, nullptr);
  const json golden = Golden();
  ASSERT_EQ(golden["decode_cases"].size(), 14u);
  for (const json& c : golden["decode_cases"]) {
    const std::string what = c["description"];
    auto decoded = plain_->Decode(Ids(c["ids"]), false);
    auto decoded_skip = plain_->Decode(Ids(c["ids"]), true);
    ASSERT_TRUE(decoded.ok() && decoded_skip.ok()) << what;
    EXPECT_EQ(*decoded, c["decoded"].get<std::string>()) << what;
    EXPECT_EQ(*decoded_skip, c["decoded_skip_special"].get<std::string>()) << what;
  }
}

TEST_F(QwenTokenizerTest, GzipMatchesPlainJson) {
  ASSERT_NE(plain_, nullptr);
  ASSERT_NE(gz_, nullptr);
  EXPECT_EQ(gz_->vocab_size(), plain_->vocab_size());
  EXPECT_EQ(gz_->eos_id(), plain_->eos_id());
  for (int32_t id = 0; id < plain_->vocab_size(); id += 97) {
    EXPECT_EQ(gz_->TokenString(id), plain_->TokenString(id)) << id;
  }
  const json golden = Golden();  // Not in the for-range: the temporary would die first.
  for (const json& c : golden["cases"]) {
    EXPECT_EQ(*gz_->Encode(c["text"].get<std::string>(), false),
              *plain_->Encode(c["text"].get<std::string>(), false));
  }
  // The .gz file on its own, through FromFiles.
  auto direct = Tokenizer::FromFiles(QwenRepoDir() + "/tokenizer.json.gz", "");
  ASSERT_TRUE(direct.ok()) << direct.status().ToString();
  EXPECT_EQ((*direct)->vocab_size(), 151665);
  EXPECT_EQ((*direct)->eos_id(), std::nullopt);  // No config: the post-processor adds none.
}

TEST_F(QwenTokenizerTest, LongTextRoundTrips) {
  ASSERT_NE(plain_, nullptr);
  const std::string text = test::ReadFileOrDie(test::TextDataDir() + "/pride_and_prejudice.txt");
  auto ids = plain_->Encode(text, false);
  ASSERT_TRUE(ids.ok());
  EXPECT_GT(ids->size(), 100000u);
  EXPECT_EQ(*plain_->Decode(*ids, false), text);  // The text is ASCII, hence NFC.
  // A long run of spaces and a long word stay linear (no regex or merge blow-up).
  const std::string spaces(200000, ' ');
  auto space_ids = plain_->Encode(spaces + "x", false);
  ASSERT_TRUE(space_ids.ok()) << space_ids.status().ToString();
  EXPECT_EQ(*plain_->Decode(*space_ids, false), spaces + "x");
  const std::string word(200000, 'a');
  auto word_ids = plain_->Encode(word, false);
  ASSERT_TRUE(word_ids.ok());
  EXPECT_EQ(*plain_->Decode(*word_ids, false), word);
}

TEST(TokenizerLoadTest, Errors) {
  auto missing = Tokenizer::FromDirectory("/nonexistent/dir");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/dir"), std::string::npos);

  auto missing_file = Tokenizer::FromFiles("/nonexistent/tokenizer.json", "");
  ASSERT_FALSE(missing_file.ok());
  EXPECT_EQ(missing_file.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing_file.status().message().find("/nonexistent/tokenizer.json"), std::string::npos);

  const std::string dir = test::MakeTempDir("tokenizer");
  const std::string path = dir + "/tokenizer.json";
  WriteFile(path, "{\"model\": {\"type\": \"BPE\", ");
  auto malformed = Tokenizer::FromFiles(path, "");
  ASSERT_FALSE(malformed.ok());
  EXPECT_EQ(malformed.status().code(), StatusCode::kCorruption);
  EXPECT_NE(malformed.status().message().find(path + ": invalid JSON"), std::string::npos)
      << malformed.status().message();

  const json stories = ReadJson(StoriesDir() + "/tokenizer.json");
  json wordpiece = stories;
  wordpiece["model"]["type"] = "WordPiece";
  WriteFile(path, wordpiece.dump());
  auto unsupported = Tokenizer::FromFiles(path, "");
  ASSERT_FALSE(unsupported.ok());
  EXPECT_EQ(unsupported.status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(unsupported.status().message(), path + ": model.type \"WordPiece\" is not supported");

  json metaspace = stories;
  metaspace["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}};
  WriteFile(path, metaspace.dump());
  auto bad_pre = Tokenizer::FromFiles(path, "");
  ASSERT_FALSE(bad_pre.ok());
  EXPECT_EQ(bad_pre.status().message(),
            path + ": pre_tokenizer.type \"Metaspace\" is not supported");

  json bad_merge = stories;
  bad_merge["model"]["merges"].push_back("zz qq");
  WriteFile(path, bad_merge.dump());
  auto merge_error = Tokenizer::FromFiles(path, "");
  ASSERT_FALSE(merge_error.ok());
  EXPECT_NE(merge_error.status().message().find("model.merges[165]"), std::string::npos)
      << merge_error.status().message();

  WriteFile(path, stories.dump());
  WriteFile(dir + "/tokenizer_config.json", "{\"bos_token\": 7}");
  auto bad_config = Tokenizer::FromDirectory(dir);
  ASSERT_FALSE(bad_config.ok());
  EXPECT_NE(bad_config.status().message().find("tokenizer_config.json: bos_token"),
            std::string::npos)
      << bad_config.status().message();
}

TEST(TokenizerLoadTest, ConfigControlsBos) {
  const std::string dir = test::MakeTempDir("tokenizer-config");
  WriteFile(dir + "/tokenizer.json", test::ReadFileOrDie(StoriesDir() + "/tokenizer.json"));
  WriteFile(dir + "/tokenizer_config.json",
            R"({"add_bos_token": false, "add_eos_token": true,
                "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>"})");
  auto tok = Tokenizer::FromDirectory(dir);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ((*tok)->bos_id(), 1);
  auto ids = (*tok)->Encode("Hello", true);
  ASSERT_TRUE(ids.ok());
  ASSERT_FALSE(ids->empty());
  EXPECT_NE(ids->front(), 1);
  EXPECT_EQ(ids->back(), 2);
}

TEST(TokenizerLoadTest, AddedTokenFlags) {
  json spec = ReadJson(StoriesDir() + "/tokenizer.json");
  auto added = [](int id, const char* content, bool lstrip, bool rstrip, bool single_word) {
    return json{{"id", id},         {"content", content}, {"single_word", single_word},
                {"lstrip", lstrip}, {"rstrip", rstrip},   {"normalized", false},
                {"special", true}};
  };
  spec["added_tokens"].push_back(added(512, "[M]", true, true, false));
  spec["added_tokens"].push_back(added(513, "ab", false, false, true));
  const std::string dir = test::MakeTempDir("tokenizer-added");
  WriteFile(dir + "/tokenizer.json", spec.dump());
  auto tok_or = Tokenizer::FromDirectory(dir);
  ASSERT_TRUE(tok_or.ok()) << tok_or.status().ToString();
  const Tokenizer& tok = **tok_or;
  EXPECT_EQ(tok.vocab_size(), 514);
  auto enc = [&](const std::string& s) { return *tok.Encode(s, false); };
  auto concat = [](std::vector<std::vector<int32_t>> parts) {
    std::vector<int32_t> out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
  };
  // lstrip/rstrip swallow the spaces around "[M]".
  EXPECT_EQ(enc("x  [M]  y"), concat({enc("x"), {512}, enc("y")}));
  // single_word: "ab" matches only when not inside a word.
  EXPECT_EQ(enc("ab c"), concat({{513}, enc(" c")}));
  EXPECT_EQ(enc("xab c"), concat({enc("xab c")}));
  EXPECT_NE(enc("xab c")[1], 513);
  EXPECT_EQ(*tok.Decode(std::vector<int32_t>{512, 513}, false), "[M]ab");
}

TEST(TokenizerUnicodeTest, LossyDecodingFollowsRust) {
  using tokenizer::Utf8Lossy;
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(Utf8Lossy("a\xF0\x9F\x98"), "a" + fffd);         // Truncated: one U+FFFD.
  EXPECT_EQ(Utf8Lossy("\xED\xA0\x80"), fffd + fffd + fffd);  // Surrogate: three.
  EXPECT_EQ(Utf8Lossy("\xC0\x80"), fffd + fffd);             // Overlong: two.
  EXPECT_EQ(Utf8Lossy("\xE2\x82"
                      "A"),
            fffd + "A");
  EXPECT_EQ(Utf8Lossy("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
  EXPECT_EQ(tokenizer::FindInvalidUtf8("ab\xFF"), 2u);
  EXPECT_EQ(tokenizer::FindInvalidUtf8("\xF4\x90\x80\x80"), 0u);  // Above U+10FFFF.
  EXPECT_EQ(tokenizer::FindInvalidUtf8("h\xC3\xA9"), std::nullopt);
}

TEST(TokenizerUnicodeTest, CaselessGroupsRestrictedToAscii) {
  using tokenizer::RestrictCaselessGroupsToAscii;
  EXPECT_EQ(RestrictCaselessGroupsToAscii("(?i:'s|'t)|x"), "(?:'[sS]|'[tT])|x");
  // Escaped parentheses and classes are left alone, as are groups that are not plain.
  EXPECT_EQ(RestrictCaselessGroupsToAscii(R"(\(?i:a)[(?i:b])"), R"(\(?i:a)[(?i:b])");
  EXPECT_EQ(RestrictCaselessGroupsToAscii("(?i:a+)"), "(?i:a+)");
}

}  // namespace
}  // namespace ckv
