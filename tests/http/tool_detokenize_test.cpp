// R1 tool-call text through the real DeepSeek-V3 tokenizer (.cache/tokenizers): encoded to ids,
// then fed one id at a time through ChoiceStream (incremental detokenizer with special tokens
// skipped, reasoning split, tool stream), as the engine's outputs arrive. The tool markers are
// not "special" tokens, so they must survive detokenization for the parser to read them. (One
// tokenizer only: loading the 129k vocabulary takes seconds; Qwen3's <tool_call> is not special
// either, and ran the same way once.)
#include <gtest/gtest.h>

#include <filesystem>

#include "http/choice_stream.hpp"
#include "http/hf_text_codec.hpp"

namespace troupe::http {
namespace {

const std::filesystem::path kTokenizers = std::filesystem::path(TROUPE_SOURCE_DIR) / ".cache" / "tokenizers";

struct Decoded {
  std::string streamed_content, reasoning, whole_content, names, arguments;
  int num_streamed_calls = 0;
  std::vector<ToolCall> calls;
};

Decoded run(const std::string& tokenizer, const std::string& parser, const std::string& text, bool reasoning) {
  Decoded out;
  auto codec = HfTextCodec::load((kTokenizers / tokenizer).string());
  if (!codec.ok()) {
    ADD_FAILURE() << tokenizer << ": " << codec.error().message << " (run tools/test-setup)";
    return out;
  }
  std::vector<int32_t> ids = codec.value()->encode(text, false);
  ChoiceStream choice(0, *codec.value(), {}, reasoning ? ReasoningParser::create("deepseek_r1", "<think>\n") : nullptr,
                      false, ToolParser::create(parser));
  for (size_t i = 0; i < ids.size(); ++i) {
    GenerationOutput output;
    output.new_token_ids = {ids[i]};
    if (i + 1 == ids.size()) output.finish_reason = FinishReason::stop;
    ChoiceDelta d = choice.push(output);
    out.streamed_content += d.content;
    out.reasoning += d.reasoning;
    for (const ToolCallDelta& t : d.tool_calls) {
      if (t.is_first) {
        ++out.num_streamed_calls;
        out.names += t.name + ";";
      }
      out.arguments += t.arguments;
    }
  }
  EXPECT_TRUE(choice.is_finished());
  out.whole_content = choice.content();
  out.calls = choice.tool_calls();
  return out;
}

TEST(ToolDetokenize, DeepseekR1MarkersSurvive) {
  const std::string text =
      "Need the weather.</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
      "```json\n{\"city\": \"Zürich\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n"
      "```json\n{\"a\": 2, \"b\": 3}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  Decoded r = run("deepseek_v3", "deepseek_v3", text, /*reasoning=*/true);
  EXPECT_EQ(r.reasoning, "Need the weather.");
  EXPECT_EQ(r.streamed_content, "");
  EXPECT_EQ(r.whole_content, "");
  EXPECT_EQ(r.num_streamed_calls, 2);
  EXPECT_EQ(r.names, "get_weather;add;");
  EXPECT_EQ(r.arguments, "{\"city\": \"Zürich\"}{\"a\": 2, \"b\": 3}");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[1].arguments, "{\"a\": 2, \"b\": 3}");
}

}  // namespace
}  // namespace troupe::http
