// ResponseStore: bounded by entries and bytes, least recently used out first, get refreshes.
#include <gtest/gtest.h>

#include "http/response_store.hpp"

namespace troupe::http {
namespace {

using nlohmann::json;

json turn(const std::string& text) { return json::array({{{"role", "user"}, {"content", text}}}); }

TEST(ResponseStore, KeepsTheMostRecentlyUsedWithinItsBounds) {
  ResponseStore store(/*max_entries=*/2);
  store.put("a", turn("1"));
  store.put("b", turn("2"));
  ASSERT_TRUE(store.get("a").has_value());  // a is now the most recent
  store.put("c", turn("3"));                 // b goes
  EXPECT_EQ(store.num_entries(), 2u);
  EXPECT_FALSE(store.get("b").has_value());
  EXPECT_EQ((*store.get("a"))[0]["content"], "1");
  EXPECT_EQ((*store.get("c"))[0]["content"], "3");
  store.put("a", turn("again"));  // replaced, not duplicated
  EXPECT_EQ(store.num_entries(), 2u);
  EXPECT_EQ((*store.get("a"))[0]["content"], "again");
}

TEST(ResponseStore, BytesBoundEvictsAndRefusesAnOversizedEntry) {
  const std::string big(400, 'x');
  ResponseStore store(/*max_entries=*/100, /*max_bytes=*/1000);
  store.put("a", turn(big));
  store.put("b", turn(big));
  EXPECT_EQ(store.num_entries(), 2u);
  store.put("c", turn(big));  // three would pass 1000 bytes: a goes
  EXPECT_EQ(store.num_entries(), 2u);
  EXPECT_FALSE(store.get("a").has_value());
  EXPECT_LE(store.num_bytes(), 1000u);
  store.put("huge", turn(std::string(2000, 'y')));
  EXPECT_FALSE(store.get("huge").has_value());
  EXPECT_TRUE(store.get("b").has_value());
  EXPECT_TRUE(store.get("c").has_value());
}

}  // namespace
}  // namespace troupe::http
