// The request streams of `ckv bench reprefill --workload`: shapes, determinism, popularity.
#include "bench_workload.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

namespace ckv::cli {
namespace {

std::vector<int32_t> Text(int n) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), 1000);
  return t;
}

bool StartsWith(const std::vector<int32_t>& v, const std::vector<int32_t>& prefix) {
  return v.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), v.begin());
}

TEST(BenchWorkload, SinglePrefixHasConsecutiveSuffixes) {
  WorkloadArgs a;
  a.prefix_tokens = 100;
  a.suffix_tokens = 8;
  a.requests = 3;
  auto w = MakeWorkloads(a, Text(1000), 7);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_EQ(w->size(), 1u);
  const Workload& s = (*w)[0];
  ASSERT_EQ(s.prefixes.size(), 1u);
  ASSERT_EQ(s.prefixes[0].size(), 100u);
  EXPECT_EQ(s.prefixes[0][0], 7);  // BOS
  EXPECT_EQ(s.prefixes[0][1], 1000);
  ASSERT_EQ(s.requests.size(), 3u);
  for (int r = 0; r < 3; ++r) {
    const auto& t = s.requests[r].tokens;
    ASSERT_EQ(t.size(), 108u);
    EXPECT_TRUE(StartsWith(t, s.prefixes[0]));
    EXPECT_EQ(t[100], 1000 + 99 + 8 * r);  // the text right after the prefix, request by request
  }
  EXPECT_EQ(s.MeanPrefixTokens(), 100);
}

TEST(BenchWorkload, TextIsReusedCyclically) {
  WorkloadArgs a;
  a.prefix_tokens = 50;
  a.suffix_tokens = 4;
  a.requests = 1;
  auto w = MakeWorkloads(a, Text(20), std::nullopt);
  ASSERT_TRUE(w.ok());
  const auto& p = (*w)[0].prefixes[0];
  ASSERT_EQ(p.size(), 50u);
  EXPECT_EQ(p[0], 1000);
  EXPECT_EQ(p[20], 1000);
  EXPECT_EQ(p[49], 1009);
}

TEST(BenchWorkload, ManyShotPrefixesSpreadToOneAndAHalfAndAreDeterministic) {
  WorkloadArgs a;
  a.name = "manyshot";
  a.prefix_tokens = 400;
  a.suffix_tokens = 16;
  a.requests = 40;
  a.prefixes = 3;
  a.shot_tokens = 50;
  auto w = MakeWorkloads(a, Text(5000), 1);
  ASSERT_TRUE(w.ok());
  const Workload& m = (*w)[0];
  ASSERT_EQ(m.prefixes.size(), 3u);
  EXPECT_EQ(m.prefixes[0].size(), 400u);
  EXPECT_EQ(m.prefixes[1].size(), 500u);
  EXPECT_EQ(m.prefixes[2].size(), 600u);
  EXPECT_NE(m.prefixes[0], m.prefixes[1]);
  // Demonstrations are contiguous passages of the text.
  EXPECT_EQ(m.prefixes[0][2], m.prefixes[0][1] + 1);
  std::set<int> used;
  for (const auto& r : m.requests) {
    used.insert(r.prefix);
    ASSERT_EQ(r.tokens.size(), m.prefixes[r.prefix].size() + 16);
    EXPECT_TRUE(StartsWith(r.tokens, m.prefixes[r.prefix]));
  }
  EXPECT_EQ(used.size(), 3u);
  auto again = MakeWorkloads(a, Text(5000), 1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].prefixes, m.prefixes);
  EXPECT_EQ((*again)[0].requests[5].tokens, m.requests[5].tokens);
  a.seed = 2;
  auto other = MakeWorkloads(a, Text(5000), 1);
  ASSERT_TRUE(other.ok());
  EXPECT_NE((*other)[0].prefixes, m.prefixes);
}

TEST(BenchWorkload, ZipfFavoursLowRanks) {
  WorkloadArgs a;
  a.name = "zipf";
  a.prefix_tokens = 64;
  a.suffix_tokens = 4;
  a.requests = 4000;
  a.prefixes = 8;
  a.zipf_s = 1.0;
  auto w = MakeWorkloads(a, Text(10000), std::nullopt);
  ASSERT_TRUE(w.ok());
  const Workload& z = (*w)[0];
  ASSERT_EQ(z.prefixes.size(), 8u);
  EXPECT_EQ(std::set<std::vector<int32_t>>(z.prefixes.begin(), z.prefixes.end()).size(), 8u);
  std::vector<int> count(8);
  for (const auto& r : z.requests) ++count[r.prefix];
  // 1/i popularity: rank 1 gets about 37% of 8 prefixes' requests, rank 8 under 5%.
  EXPECT_GT(count[0], count[1]);
  EXPECT_GT(count[1], count[3]);
  EXPECT_GT(count[3], count[7]);
  EXPECT_NEAR(count[0] / 4000.0,
              1.0 / (1 + 1.0 / 2 + 1.0 / 3 + 1.0 / 4 + 1.0 / 5 + 1.0 / 6 + 1.0 / 7 + 1.0 / 8),
              0.03);
  a.zipf_s = 0;  // uniform
  auto flat = MakeWorkloads(a, Text(10000), std::nullopt);
  ASSERT_TRUE(flat.ok());
  std::fill(count.begin(), count.end(), 0);
  for (const auto& r : (*flat)[0].requests) ++count[r.prefix];
  EXPECT_NEAR(count[0] / 4000.0, 0.125, 0.03);
}

TEST(BenchWorkload, LengthSweepMakesOneGroupPerLength) {
  WorkloadArgs a;
  a.name = "length-sweep";
  a.prefix_lengths = {32, 64, 128};
  a.requests = 2;
  a.suffix_tokens = 4;
  auto w = MakeWorkloads(a, Text(1000), std::nullopt);
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(w->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*w)[i].name, "length-sweep");
    EXPECT_EQ((*w)[i].MeanPrefixTokens(), a.prefix_lengths[i]);
    EXPECT_EQ((*w)[i].requests.size(), 2u);
  }
}

TEST(BenchWorkload, BadArgumentsAreNamed) {
  WorkloadArgs a;
  a.name = "bursty";
  auto w = MakeWorkloads(a, Text(100), std::nullopt);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().ToString().find("--workload"), std::string::npos);
  a.name = "single";
  a.requests = 0;
  w = MakeWorkloads(a, Text(100), std::nullopt);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().ToString().find("--requests"), std::string::npos);
  a.requests = 1;
  w = MakeWorkloads(a, {}, std::nullopt);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().ToString().find("--text"), std::string::npos);
  a.name = "length-sweep";
  a.prefix_lengths = {64, 1};
  w = MakeWorkloads(a, Text(100), std::nullopt);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().ToString().find("--prefix-lengths"), std::string::npos);
}

}  // namespace
}  // namespace ckv::cli
