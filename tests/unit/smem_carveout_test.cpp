// The carveout a dependent launch asks for (kernels/smem_carveout.hpp): decode-step kernels follow
// the process-wide preference a model sets at load; the MLA prefill kernels ask for all of shared
// memory whatever it is, so an FP8 model's 50% no longer holds them to one CTA an SM.
#include <gtest/gtest.h>

#include <cstdlib>

#include "kernels/smem_carveout.hpp"

namespace troupe::kernels {
namespace {

class SmemCarveout : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::getenv("TROUPE_SMEM_CARVEOUT")) GTEST_SKIP() << "TROUPE_SMEM_CARVEOUT forces every launch";
    saved_ = dependent_smem_carveout_setting().load();
  }
  void TearDown() override { set_dependent_smem_carveout(saved_); }
  int saved_ = -1;
};

TEST_F(SmemCarveout, SharedPreferenceFollowsTheModelsSetting) {
  set_dependent_smem_carveout(-1);
  EXPECT_EQ(smem_carveout_for(SmemNeed::shared_preference), -1);
  set_dependent_smem_carveout(kFp8DecodeSmemCarveout);
  EXPECT_EQ(smem_carveout_for(SmemNeed::shared_preference), kFp8DecodeSmemCarveout);
}

TEST_F(SmemCarveout, FullNeedIgnoresTheDecodePreference) {
  for (int preference : {-1, 0, 25, kFp8DecodeSmemCarveout, 100}) {
    set_dependent_smem_carveout(preference);
    EXPECT_EQ(smem_carveout_for(SmemNeed::full), kFullSmemCarveout) << "preference " << preference;
  }
}

}  // namespace
}  // namespace troupe::kernels
