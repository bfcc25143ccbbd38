// Tool conversations rendered through troupe's request path (parse_chat_request, then the chat
// template with render_chat_with_tools) against transformers' apply_chat_template
// (tools/make_tool_template_fixtures.py -> tests/fixtures/chat/tool_rendering.json), byte for
// byte, for the real DeepSeek-V3, Qwen3 and Llama-3.1 templates; then each rendered assistant
// tool-call turn parsed back with the matching --tool-call-parser gives the same calls.
#include <gtest/gtest.h>

#include <iostream>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "http/openai_request.hpp"
#include "http/tool_request.hpp"
#include "text/chat_template.hpp"

namespace troupe::http {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kSource = TROUPE_SOURCE_DIR;

fs::path fixture_path() {
  if (const char* path = std::getenv("TROUPE_TOOL_RENDERING_FIXTURE")) return path;
  return kSource / "tests" / "fixtures" / "chat" / "tool_rendering.json";
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Only render_chat matters here.
class TemplateCodec final : public TextCodec {
 public:
  explicit TemplateCodec(ChatTemplate t) : template_(std::move(t)) {}
  std::vector<int32_t> encode(const std::string&, bool) const override { return {}; }
  std::string decode(const std::vector<int32_t>&) const override { return ""; }
  Result<std::string> render_chat(const json& messages, const json& tools, bool add_generation_prompt) const override {
    return template_.render(messages, add_generation_prompt, tools);
  }
  std::unique_ptr<TextDetokenizer> make_detokenizer() const override { return nullptr; }
  int64_t vocab_size() const override { return 0; }

 private:
  ChatTemplate template_;
};

std::string token_text(const json& config, const char* field) {
  if (!config.contains(field)) return "";
  const json& v = config[field];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content")) return v["content"].get<std::string>();
  return "";
}

Result<ChatTemplate> load_template(const json& spec) {
  const fs::path folder = kSource / ".cache" / "tokenizers" / spec["tokenizer"].get<std::string>();
  if (spec["template_file"].is_null()) return ChatTemplate::load(folder.string());
  json config = json::parse(read_file(folder / "tokenizer_config.json"));
  return ChatTemplate::parse(read_file(kSource / spec["template_file"].get<std::string>()), token_text(config, "bos_token"),
                             token_text(config, "eos_token"));
}

// The conversation as the server sees it: through parse_chat_request, as an HTTP body would go.
Result<std::string> render(const TextCodec& codec, const json& conversation, const json& messages, bool agp) {
  json body{{"model", "m"}, {"messages", messages}, {"tool_choice", "none"}};
  if (conversation.contains("tools")) body["tools"] = conversation["tools"];
  std::string param;
  Result<OpenAIRequest> request = parse_chat_request(body, param);
  if (!request.ok()) return request.error();
  ChatRenderOptions options;
  options.add_generation_prompt = agp;
  return render_chat_with_tools(codec, request->messages, request->tools, options);
}

json load_fixture() {
  const fs::path path = fixture_path();
  if (!fs::exists(path)) {
    // NOTE: skipped (ctest shows it) until the GPU machine, the one with transformers, renders it.
    std::cerr << path << " is missing: run `python3 tools/make_tool_template_fixtures.py` (transformers 5.x, "
              << "no network) on a machine with transformers and commit its output\n";
    return nullptr;
  }
  return json::parse(read_file(path));
}

TEST(ToolTemplate, RenderingMatchesTransformers) {
  json fixture = load_fixture();
  if (fixture.is_null()) GTEST_SKIP() << "tests/fixtures/chat/tool_rendering.json not generated yet";
  std::map<std::string, std::unique_ptr<TemplateCodec>> codecs;
  for (const auto& [name, spec] : fixture["templates"].items()) {
    Result<ChatTemplate> t = load_template(spec);
    ASSERT_TRUE(t.ok()) << name << ": " << t.error().message;
    codecs[name] = std::make_unique<TemplateCodec>(std::move(t).value());
  }
  int num_compared = 0;
  for (const json& r : fixture["renderings"]) {
    const std::string name = r["template"];
    const json& conversation = fixture["conversations"][r["conversation"].get<size_t>()];
    const std::string what = name + " / " + conversation["name"].get<std::string>() +
                             (r["add_generation_prompt"].get<bool>() ? " / generation prompt" : "");
    Result<std::string> out = render(*codecs.at(name), conversation, conversation["messages"], r["add_generation_prompt"]);
    // Contents null as sent when the template takes them; else "" (the fallback), as vLLM sends.
    const json expected = r.contains("prompt") ? r["prompt"] : r.value("prompt_empty_content", json());
    if (expected.is_null()) {
      EXPECT_FALSE(out.ok()) << what << ": transformers raised " << r.value("error", "") << " but troupe rendered";
      continue;
    }
    ASSERT_TRUE(out.ok()) << what << ": " << out.error().message;
    EXPECT_EQ(out.value(), expected.get<std::string>()) << what;
    ++num_compared;
  }
  EXPECT_GE(num_compared, 40);
}

// The text an assistant tool-call turn adds after the generation prompt, up to its end of turn.
TEST(ToolTemplate, RenderedCallsParseBack) {
  json fixture = load_fixture();
  if (fixture.is_null()) GTEST_SKIP() << "tests/fixtures/chat/tool_rendering.json not generated yet";
  struct Pairing {
    std::string parser, end_of_turn;
  };
  const std::map<std::string, Pairing> pairs = {{"deepseek_v3", {"deepseek_v3", "<｜end▁of▁sentence｜>"}},
                                                {"qwen3", {"hermes", "<|im_end|>"}},
                                                {"llama3_1_json_tools", {"llama3_json", "<|eot_id|>"}}};
  int num_round_trips = 0;
  for (const auto& [name, pairing] : pairs) {
    Result<ChatTemplate> t = load_template(fixture["templates"][name]);
    ASSERT_TRUE(t.ok()) << t.error().message;
    TemplateCodec codec(std::move(t).value());
    for (const json& conversation : fixture["conversations"]) {
      const json& messages = conversation["messages"];
      for (size_t k = 0; k < messages.size(); ++k) {
        const json& m = messages[k];
        // DeepSeek-V3's template writes calls only for content null (the OpenAI client's form).
        if (!m.contains("tool_calls") || !m["content"].is_null()) continue;
        const std::string what = name + " / " + conversation["name"].get<std::string>();
        json before = json::array(), through = json::array();
        for (size_t i = 0; i <= k; ++i) (i < k ? before : through).push_back(messages[i]);
        through.insert(through.begin(), before.begin(), before.end());
        Result<std::string> prefix = render(codec, conversation, before, true);
        Result<std::string> full = render(codec, conversation, through, false);
        ASSERT_TRUE(prefix.ok() && full.ok()) << what;
        ASSERT_EQ(full->rfind(prefix.value(), 0), 0u) << what << ": the turn does not extend the generation prompt";
        std::string turn = full->substr(prefix->size());
        turn = turn.substr(0, turn.find(pairing.end_of_turn));
        if (size_t think = turn.find("</think>"); think != std::string::npos) turn = turn.substr(think + 8);
        ToolParse parse = parse_tool_calls(*ToolParser::create(pairing.parser), turn);
        ASSERT_EQ(parse.calls.size(), m["tool_calls"].size()) << what << ": " << turn;
        EXPECT_EQ(parse.content, "") << what;
        for (size_t i = 0; i < parse.calls.size(); ++i) {
          EXPECT_EQ(parse.calls[i].name, m["tool_calls"][i]["function"]["name"]) << what;
          EXPECT_EQ(parse.calls[i].arguments, m["tool_calls"][i]["function"]["arguments"]) << what;
        }
        ++num_round_trips;
      }
    }
  }
  EXPECT_GE(num_round_trips, 9);
}

}  // namespace
}  // namespace troupe::http
