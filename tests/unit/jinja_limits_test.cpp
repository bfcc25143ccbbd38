// The render limits that make an untrusted chat template safe to run (as sandboxed Jinja's are):
// loop iterations, output and string size, macro recursion, nesting of the parser and of
// expressions, and int64 arithmetic that fails instead of overflowing. Each gives a clear error.
#include <gtest/gtest.h>

#include <string>

#include "text/jinja_interpreter.hpp"

namespace troupe::jinja {
namespace {

Result<std::string> render(const std::string& source, const RenderLimits& limits = {}) {
  auto t = Template::parse(source);
  if (!t.ok()) return t.error();
  return t.value()->render(ValueDict{}, limits);
}

void expect_error(const Result<std::string>& r, ErrorCode code, const std::string& part) {
  ASSERT_FALSE(r.ok()) << "rendered " << r.value().size() << " bytes";
  EXPECT_EQ(r.error().code, code);
  EXPECT_NE(r.error().message.find(part), std::string::npos) << r.error().message;
}

TEST(JinjaLimits, LoopIterationsAreCountedOverTheWholeRender) {
  RenderLimits limits;
  limits.max_loop_iterations = 110;  // 10 outer + 10 x 10 inner
  EXPECT_EQ(render("{% for i in range(10) %}{% for j in range(10) %}x{% endfor %}{% endfor %}", limits).value(),
            std::string(100, 'x'));
  expect_error(render("{% for i in range(10) %}{% for j in range(11) %}x{% endfor %}{% endfor %}", limits),
               ErrorCode::invalid_argument, "loops ran more than the limit of 110 iterations");
  // Loop filters count too.
  expect_error(render("{% for i in range(111) if i > 1000 %}{% endfor %}", limits), ErrorCode::invalid_argument,
               "limit of 110 iterations");
  // The default bounds nested range() loops that would run 10^10 times.
  expect_error(render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
               ErrorCode::invalid_argument, "iterations");
}

TEST(JinjaLimits, OutputAndStringsAreBounded) {
  RenderLimits limits;
  limits.max_output_bytes = 1000;
  EXPECT_EQ(render("{% for i in range(100) %}0123456789{% endfor %}", limits).value().size(), 1000u);
  expect_error(render("{% for i in range(101) %}0123456789{% endfor %}", limits), ErrorCode::invalid_argument,
               "output exceeds the limit of 1000 bytes");
  // A string doubled in a loop fails when it passes the bound, before it is written anywhere.
  expect_error(render("{% set ns = namespace(s='ab') %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}"
                      "{% endfor %}",
                      limits),
               ErrorCode::invalid_argument, "a string exceeds the limit of 1000 bytes");
  expect_error(render("{{ ('x' * 600) ~ ('y' * 600) }}", limits), ErrorCode::invalid_argument, "1000 bytes");
}

TEST(JinjaLimits, MacroRecursionIsBounded) {
  const std::string source = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
  expect_error(render(source), ErrorCode::invalid_argument, "macro 'f' nested deeper than the limit of 100");
  RenderLimits limits;
  limits.max_recursion = 5;
  expect_error(render(source, limits), ErrorCode::invalid_argument, "limit of 5");
  auto five = render("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(4) }}", limits);
  ASSERT_TRUE(five.ok()) << five.error().message;  // f(4) .. f(0): five calls inside one another
  EXPECT_EQ(five.value(), "4321");
}

TEST(JinjaLimits, DeepNestingIsAParseErrorNotAStackOverflow) {
  for (auto [open, close] : {std::pair<std::string, std::string>{"(", ")"}, {"[", "]"}, {"not ", ""}, {"-", ""},
                             {"{'k': ", "}"}}) {
    std::string source = "{{ ";
    for (int i = 0; i < 100000; ++i) source += open;
    source += "1";
    for (int i = 0; i < 100000; ++i) source += close;
    auto t = Template::parse(source + " }}");
    ASSERT_FALSE(t.ok()) << open;
    EXPECT_EQ(t.error().code, ErrorCode::unsupported);
    EXPECT_NE(t.error().message.find("nesting deeper than 100 levels"), std::string::npos) << t.error().message;
  }
  std::string blocks;
  for (int i = 0; i < 10000; ++i) blocks += "{% if true %}";
  EXPECT_FALSE(Template::parse(blocks).ok());
  // 100 levels are fine.
  auto ok = render("{{ " + std::string(90, '(') + "7" + std::string(90, ')') + " }}");
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok.value(), "7");
}

TEST(JinjaLimits, LongOperatorChainsAreBoundedWhenEvaluated) {
  // `1 + 1 + ...` parses without recursion but evaluates as deep as it is long.
  std::string chain = "1";
  for (int i = 0; i < 2000; ++i) chain += " + 1";
  expect_error(render("{{ " + chain + " }}"), ErrorCode::invalid_argument,
               "expressions nested deeper than the limit of 1000");
  RenderLimits limits;
  limits.max_expression_depth = 5000;
  EXPECT_EQ(render("{{ " + chain + " }}", limits).value(), "2001");
}

TEST(JinjaLimits, IntegerOverflowIsAnErrorAndPowerIsFast) {
  expect_error(render("{{ 9223372036854775807 + 1 }}"), ErrorCode::invalid_argument, "integer overflow in '+'");
  expect_error(render("{{ -9223372036854775807 - 2 }}"), ErrorCode::invalid_argument, "integer overflow in '-'");
  expect_error(render("{{ 4294967296 * 4294967296 }}"), ErrorCode::invalid_argument, "integer overflow in '*'");
  expect_error(render("{{ 2 ** 64 }}"), ErrorCode::invalid_argument, "integer overflow in '**'");
  EXPECT_EQ(render("{{ 2 ** 62 }}").value(), "4611686018427387904");
  EXPECT_EQ(render("{{ (-2) ** 63 }}").value(), "-9223372036854775808");
  // Found by tests/fuzz (fuzz_jinja, UBSan): `%` formed q * b, which overflows near int64's ends.
  EXPECT_EQ(render("{{ -9223372036854775807 % 3 }}").value(), "2");
  EXPECT_EQ(render("{{ 9223372036854775807 % -2 }}").value(), "-1");
  EXPECT_EQ(render("{{ (-9223372036854775807 - 1) % -1 }}").value(), "0");
  EXPECT_EQ(render("{{ -7 % 3 }}|{{ 7 % -3 }}|{{ -7 // 2 }}").value(), "2|-2|-4");
  expect_error(render("{{ (-9223372036854775807 - 1) // -1 }}"), ErrorCode::invalid_argument,
               "integer overflow in '//'");
  // Once a loop of 10^18 steps; now O(log n).
  EXPECT_EQ(render("{{ 1 ** 1000000000000000000 }}").value(), "1");
  EXPECT_EQ(render("{{ 0 ** 1000000000000000000 }}").value(), "0");
}

}  // namespace
}  // namespace troupe::jinja
