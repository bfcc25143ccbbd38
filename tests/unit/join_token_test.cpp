#include <gtest/gtest.h>

#include <string>

#include "cluster/join_token.hpp"

namespace troupe::cluster {
namespace {

TEST(JoinToken, EqualOnlyWhenEveryByteMatches) {
  EXPECT_TRUE(tokens_equal("s3cret", "s3cret"));
  EXPECT_TRUE(tokens_equal("", ""));
  EXPECT_FALSE(tokens_equal("s3cret", "s3creT"));  // last byte
  EXPECT_FALSE(tokens_equal("s3cret", "S3cret"));  // first byte
  EXPECT_FALSE(tokens_equal("s3cret", "s3cre"));   // prefix
  EXPECT_FALSE(tokens_equal("s3cret", "s3cret!"));  // longer
  EXPECT_FALSE(tokens_equal("s3cret", ""));
  EXPECT_FALSE(tokens_equal("", "x"));
}

TEST(JoinToken, EmbeddedZerosAreCompared) {
  const std::string a("ab\0cd", 5);
  const std::string b("ab\0ce", 5);
  const std::string a_short("ab", 2);
  EXPECT_TRUE(tokens_equal(a, std::string("ab\0cd", 5)));
  EXPECT_FALSE(tokens_equal(a, b));
  // A shorter token padded with zeros must still differ.
  EXPECT_FALSE(tokens_equal(std::string("ab\0", 3), a_short));
}

}  // namespace
}  // namespace troupe::cluster
