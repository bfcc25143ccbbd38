// Jinja interpreter against expected outputs of Jinja2 3.1 itself, rendered with the environment
// transformers uses for chat templates (trim_blocks, lstrip_blocks, its tojson); see the comment
// at each table.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "text/jinja_interpreter.hpp"

namespace troupe::jinja {
namespace {

// Ordered JSON keeps key order, like the Python dicts the expectations were rendered with.
Value from_json(const nlohmann::ordered_json& j) {
  if (j.is_null()) return Value::none();
  if (j.is_boolean()) return Value(j.get<bool>());
  if (j.is_number_integer()) return Value(j.get<int64_t>());
  if (j.is_number_float()) return Value(j.get<double>());
  if (j.is_string()) return Value(j.get<std::string>());
  if (j.is_array()) {
    ValueList items;
    for (const auto& x : j) items.push_back(from_json(x));
    return Value::list(std::move(items));
  }
  ValueDict d;
  for (auto it = j.begin(); it != j.end(); ++it) d.items.emplace_back(it.key(), from_json(it.value()));
  return Value::dict(std::move(d));
}

ValueDict test_variables() {
  return from_json(nlohmann::ordered_json::parse(R"json({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi {{x}} ü 😀"}, {"role": "assistant", "content": null}], "d": {"b": 1, "a": [1, 2.5, true, null, "x\"y\n"]}, "s": "  Hello World  ", "n": 7, "f": 2.5, "e": [], "t": ""})json")).as_dict();
}

Result<std::string> render(const std::string& source) {
  auto t = Template::parse(source);
  if (!t.ok()) return t.error();
  return t.value()->render(test_variables());
}

struct Case {
  const char* source;
  const char* expected;
};

// Expected strings: jinja2 3.1.6 ImmutableSandboxedEnvironment(trim_blocks=True,
// lstrip_blocks=True, loopcontrols) with transformers' tojson, rendered with test_variables().
const Case kCases[] = {
    {"{{ 'a' ~ 1 ~ none ~ true }}",
     "a1NoneTrue"},
    {"{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}|{{ 4 / 2 }}|{{ 1 + 1.5 }}",
     "7|3|-4|2|3.5|1024|2.0|2.5"},
    {"{{ 0.1 + 0.2 }}|{{ 1e20 }}|{{ 1e-5 }}|{{ 123456789.0 }}|{{ 1e16 }}|{{ 1234567890123456.0 }}|{{ 0.0001 }}|{{ -2.5 }}",
     "0.30000000000000004|1e+20|1e-05|123456789.0|1e+16|1234567890123456.0|0.0001|-2.5"},
    {"{{ [1, 'a', none, true, 2.0] }}|{{ (1,) }}|{{ (1, 'b') }}|{{ {'k': 'v', 'n': [1]} }}|{{ none }}|{{ undefined_thing }}|{{ false }}",
     "[1, 'a', None, True, 2.0]|(1,)|(1, 'b')|{'k': 'v', 'n': [1]}|None||False"},
    {"{{ \"it's\" }}|{{ ['it\\'s', 'a\"b', 'c\\nd'] }}",
     "it's|[\"it's\", 'a\"b', 'c\\nd']"},
    {"{% for m in messages %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}:{{ m.role }};{% endfor %}",
     "01TrueFalse33:system;12FalseFalse32:user;23FalseTrue31:assistant;"},
    {"{% for m in messages if m.role != 'system' %}{{ loop.index }}={{ m['role'] }} {% else %}none{% endfor %}",
     "1=user 2=assistant "},
    {"{% for x in e %}{{ x }}{% else %}empty{% endfor %}",
     "empty"},
    {"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
     "b=1;a=[1, 2.5, True, None, 'x\"y\\n'];"},
    {"{% for k in d %}{{ k }},{% endfor %}|{% for c in 'aü😀' %}[{{ c }}]{% endfor %}",
     "b,a,|[a][ü][😀]"},
    {"{% for x in [1,2,3,4,5] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
     "13"},
    {"{% set ns = namespace(count=0, last='') %}{% for m in messages %}{% set ns.count = ns.count + 1 %}{% set ns.last = m.role %}{% endfor %}{{ ns.count }} {{ ns.last }}",
     "3 assistant"},
    {"{% set x = 1 %}{% for i in [1, 2] %}{% set x = i * 10 %}{{ x }}{% endfor %}{{ x }}",
     "10201"},
    {"{% if n > 5 %}big{% elif n > 2 %}mid{% else %}small{% endif %}|{% if n < 5 %}a{% elif n == 7 %}b{% endif %}|{% if not n %}z{% else %}y{% endif %}",
     "big|b|y"},
    {"{{ 'yes' if n is odd else 'no' }}|{{ 'x' if false }}|{{ n is even }}|{{ n is divisibleby 7 }}|{{ n is divisibleby(3) }}",
     "yes||False|True|False"},
    {"{{ messages[0].content is string }}|{{ d is mapping }}|{{ d.a is sequence }}|{{ d.a is iterable }}|{{ n is number }}|{{ n is integer }}|{{ f is float }}|{{ messages[2].content is none }}|{{ messages[2].content is not none }}|{{ foo is defined }}|{{ foo is undefined }}|{{ d.b is defined }}|{{ d.zz is defined }}",
     "True|True|True|True|True|True|True|True|False|False|True|True|False"},
    {"{{ 'a' in 'cat' }}|{{ 'z' not in 'cat' }}|{{ 1 in [1, 2] }}|{{ 'a' in d }}|{{ 'q' in d }}|{{ 3 not in d.a }}|{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}|{{ 1 == 1.0 }}|{{ 'a' != 'b' }}|{{ [1, 2] == [1, 2] }}",
     "True|True|True|True|False|True|True|False|True|True|True"},
    {"{{ true and 'x' }}|{{ 0 or 'y' }}|{{ none or false }}|{{ not none }}|{{ 'a' and '' }}|{{ not 'a' == 'b' }}",
     "x|y|False|True||True"},
    {"[{{ s|trim }}]|[{{ s.strip() }}]|[{{ s.lstrip() }}]|[{{ s.rstrip() }}]|[{{ 'xxhixx'.strip('x') }}]|[{{ '\\n\\nhi\\n'.lstrip('\\n') }}]|{{ s|upper }}|{{ s|lower }}|{{ s.upper() }}",
     "[Hello World]|[Hello World]|[Hello World  ]|[  Hello World]|[hi]|[hi\n]|  HELLO WORLD  |  hello world  |  HELLO WORLD  "},
    {"{{ 'a,b,,c'.split(',') }}|{{ '  a  b c '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'x</think>y</think>z'.split('</think>')[-1] }}|{{ 'x</think>y'.split('</think>')[0] }}",
     "['a', 'b', '', 'c']|['a', 'b', 'c']|['a', 'b c']|z|x"},
    {"{{ 'hello'.startswith('he') }}|{{ 'hello'.endswith('lo') }}|{{ 'hello'.startswith(('x', 'h')) }}|{{ 'hello'.endswith('x') }}|{{ 'aXbX'.replace('X', '-') }}|{{ 'aXbX'|replace('X', '') }}|{{ 'hello world'|title }}|{{ 'hELLO'|capitalize }}",
     "True|True|True|False|a-b-|ab|Hello World|Hello"},
    {"{{ messages|length }}|{{ 'aü😀'|length }}|{{ d|length }}|{{ e|length }}|{{ messages|first }}|{{ (messages|last).role }}|{{ [1,2,3]|join(', ') }}|{{ ['a','b']|join }}|{{ d.a|string }}|{{ 5|string }}",
     "3|3|2|0|{'role': 'system', 'content': 'Be brief.'}|assistant|1, 2, 3|ab|[1, 2.5, True, None, 'x\"y\\n']|5"},
    {"{{ [1,2,3,4][1:3] }}|{{ [1,2,3][::-1] }}|{{ 'héllo'[1:3] }}|{{ 'hello'[::-1] }}|{{ [1,2,3,4,5][::2] }}|{{ [1,2,3][-2:] }}|{{ [1,2,3][:-1] }}|{{ 'abc'[-1] }}|{{ [1,2,3][5] }}|{{ [1,2,3][-1] }}",
     "[2, 3]|[3, 2, 1]|él|olleh|[1, 3, 5]|[2, 3]|[1, 2]|c||3"},
    {"{{ messages|selectattr('role', 'equalto', 'user')|list|length }}|{{ messages|rejectattr('role', 'equalto', 'user')|map(attribute='role')|join(',') }}|{{ [1,0,2]|select|list }}|{{ messages|map(attribute='role')|list }}|{{ ['a','B']|map('upper')|list }}",
     "1|system,assistant|[1, 2]|['system', 'user', 'assistant']|['A', 'B']"},
    {"{{ foo|default('dflt') }}|{{ ''|default('dflt') }}|{{ ''|default('dflt', true) }}|{{ none|default('x') }}|{{ d.zz|default(3) }}",
     "dflt||dflt|None|3"},
    {"{{ d|tojson }}|{{ messages[1]|tojson }}|{{ 'a<b>&\\'c'|tojson }}|{{ 1.0|tojson }}|{{ [1,[2,{}],[]]|tojson }}",
     "{\"b\": 1, \"a\": [1, 2.5, true, null, \"x\\\"y\\n\"]}|{\"role\": \"user\", \"content\": \"Hi {{x}} ü 😀\"}|\"a<b>&'c\"|1.0|[1, [2, {}], []]"},
    {"{{ d|tojson(indent=2) }}|{{ {'z': 1, 'a': {'x': []}}|tojson(indent=4, sort_keys=true) }}|{{ d|tojson(separators=(',', ':')) }}|{{ 'ü'|tojson(ensure_ascii=true) }}|{{ '😀'|tojson(true) }}",
     "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    2.5,\n    true,\n    null,\n    \"x\\\"y\\n\"\n  ]\n}|{\n    \"a\": {\n        \"x\": []\n    },\n    \"z\": 1\n}|{\"b\":1,\"a\":[1,2.5,true,null,\"x\\\"y\\n\"]}|\"\\u00fc\"|\"\\ud83d\\ude00\""},
    {"{{ d|items|list }}|{% for k, v in d|items %}{{ k }}{% endfor %}|{{ d|dictsort }}|{{ [3,1,2]|sort }}|{{ ['b','A','c']|sort }}|{{ [3,1,2]|sort(reverse=true) }}|{{ [1,2,1,3]|unique|list }}|{{ [1,5,3]|max }}|{{ [4,2]|min }}|{{ [1,2,3]|sum }}",
     "[('b', 1), ('a', [1, 2.5, True, None, 'x\"y\\n'])]|ba|[('a', [1, 2.5, True, None, 'x\"y\\n']), ('b', 1)]|[1, 2, 3]|['A', 'b', 'c']|[3, 2, 1]|[1, 2, 3]|5|2|6"},
    {"{{ '3'|int + 1 }}|{{ '2.5'|float }}|{{ 'x'|int }}|{{ 3.7|int }}|{{ -3|abs }}|{{ 2.567|round(2) }}|{{ 2.5|round }}|{{ range(3)|list }}|{{ range(1, 7, 2)|list }}",
     "4|2.5|0|3|3|2.57|2.0|[0, 1, 2]|[1, 3, 5]"},
    {"{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(2, blank=true) }}",
     "a\n  b\n\n  c|  a\n  b|a\n  \n  b"},
    {"{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ greet('Al', punct='?') }} {{ greet(name='Cy') }}",
     "Hi Bob! Hi Al? Hi Cy!"},
    {"{% set block %}inside {{ n }}{% endset %}[{{ block }}]|{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set l = [1, 2] + [3] %}{{ l }}|{{ 'ab' * 3 }}",
     "[inside 7]|12|[1, 2, 3]|ababab"},
    {"{{ d.get('b') }}|{{ d.get('zz') }}|{{ d.get('zz', 5) }}|{{ d.keys()|list }}|{{ d.values()|list|length }}|{{ messages[0]['role'] }}|{{ messages[0].role }}",
     "1|None|5|['b', 'a']|2|system|system"},
    {"{% if true %}\n  yes\n{% endif %}\n  {% if true %}\n    indented\n  {% endif %}\nend",
     "  yes\n    indented\nend"},
    {"a  {%- if true -%}  b  {%- endif -%}  c\n{{- ' d ' -}}\n  e {{ 'f' }}  \n  {{ 'g' }}\n{# comment #}\nh {#- c2 -#} i",
     "abc d e f  \n  g\nhi"},
    {"line1\n    {% set x = 1 %}\n    {{ x }}\n{%+ if true %}plus{% endif %}\n{% if true +%}\nkeep{% endif %}",
     "line1\n    1\nplus\nkeep"},
    {"  {% for i in [1,2] %}\n  item{{ i }}\n  {% endfor %}\n",
     "  item1\n  item2\n"},
    {"{{ \"double\" }} {{ 'esc\\tape\\\\' }} {{ '\\u00e9' }}",
     "double esc\tape\\ é"},
    {"{{ loop_messages }}{% set loop_messages = messages[1:] %}{{ loop_messages|length }}",
     "2"},
    {"{% for m in messages %}{% set content = m['content'] %}{% if loop.index0 == 0 %}{% set content = 'first:' + content %}{% endif %}{{ content }};{% endfor %}",
     "first:Be brief.;Hi {{x}} ü 😀;None;"},
    {"{{ messages[1].content|trim }}|{{ t|length }}|{{ t is none }}|{{ e is sequence }}",
     "Hi {{x}} ü 😀|0|False|True"},
    {"{% for m in messages[::-1] %}{{ (messages|length - 1) - loop.index0 }}{% endfor %}",
     "210"},
    {"{{ n ~ f }}|{{ n * f }}|{{ n - 10 }}|{{ -n }}|{{ n // 2.0 }}|{{ n % 2.5 }}|{{ 10 / 4 }}",
     "72.5|17.5|-3|-7|3.0|2.0|2.5"},
    {"{{ 'héllo wörld ß'|upper }}|{{ 'ÀÉÎ ΣΑΣ Привет'|lower }}|{{ 'straße'.upper() }}|{{ 'émile zola'.title() }}|{{ 'émile'|capitalize }}",
     "HÉLLO WÖRLD SS|àéî σας привет|STRASSE|Émile Zola|Émile"},
    {"{{ \"{'a': b-c (d [e <f\"|title }}|{{ 'hello2world'.title() }}|{{ 2.5 is even }}|{{ 4.0 is even }}|{{ -3 is odd }}",
     "{'a': B-C (D [E <F|Hello2World|False|True|True"},
    {"{{ (1, 2) == [1, 2] }}|{{ (1, 2) == (1, 2) }}|{{ [] is upper }}|{{ 'AB1' is upper }}|{{ 'ab' is lower }}|{{ true * 'ab' }}",
     "False|True|False|True|True|ab"},
};

TEST(Jinja, RendersLikeJinja2) {
  for (const Case& c : kCases) {
    auto out = render(c.source);
    ASSERT_TRUE(out.ok()) << c.source << "\n-> " << out.error().message;
    EXPECT_EQ(out.value(), c.expected) << "template: " << c.source;
  }
}

// Runtime errors Jinja2 raises for these (its message quoted): each must be an
// invalid_argument error, never a crash or an output.
const Case kRuntimeErrors[] = {
    {"{{ raise_exception('custom failure message') }}",
     "custom failure message"},
    {"{{ 'a' + none }}",
     "can only concatenate str (not \"NoneType\") to str"},
    {"{{ foo.bar }}",
     "'foo' is undefined"},
    {"{{ '</think>' in none }}",
     "argument of type 'NoneType' is not iterable"},
    {"{% for x in none %}{% endfor %}",
     "'NoneType' object is not iterable"},
    {"{{ d.zz.yy }}",
     "'dict object' has no attribute 'zz'"},
};

TEST(Jinja, RuntimeErrorsAreInvalidArgument) {
  for (const Case& c : kRuntimeErrors) {
    auto out = render(c.source);
    ASSERT_FALSE(out.ok()) << c.source << " rendered " << out.value();
    EXPECT_EQ(out.error().code, ErrorCode::invalid_argument) << c.source;
    EXPECT_NE(out.error().message.find(c.expected), std::string::npos)
        << c.source << ": " << out.error().message << " lacks " << c.expected;
  }
}

TEST(Jinja, RaiseExceptionMessageIsVerbatim) {
  auto out = render("{% if messages|length > 1 %}{{ raise_exception('Roles must alternate!') }}{% endif %}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(out.error().message, "Roles must alternate!");
}

TEST(Jinja, UnsupportedConstructsFailAtParseNamingThem) {
  struct Bad {
    const char* source;
    const char* mentions;
  };
  const Bad bad[] = {
      {"{% include 'other.jinja' %}", "statement 'include'"},
      {"line one\n{% import 'x' as y %}", "line 2"},
      {"{% for x in xs %}no end", "endfor"},
      {"{% if x %}a{% else %}b", "endif"},
      {"{{ a | }}", "expected a name"},
      {"{{ 'unterminated }}", "unterminated string"},
      {"{{ a $ b }}", "unexpected character '$'"},
      {"{% for x in xs recursive %}{% endfor %}", "recursive"},
      {"{{ (a }}", "unbalanced"},
      {"{# never closed", "unclosed comment"},
      {"{% if x %}{% break %}{% endif %}", "'break' outside a for loop"},
  };
  for (const Bad& b : bad) {
    auto t = Template::parse(b.source);
    ASSERT_FALSE(t.ok()) << b.source;
    EXPECT_EQ(t.error().code, ErrorCode::unsupported) << b.source;
    EXPECT_NE(t.error().message.find(b.mentions), std::string::npos) << b.source << ": " << t.error().message;
  }
}

TEST(Jinja, UnknownFilterOrTestIsUnsupportedAtParse) {
  auto filter = Template::parse("ok\n{% if x %}{{ 'x'|no_such_filter }}{% endif %}");
  ASSERT_FALSE(filter.ok());
  EXPECT_EQ(filter.error().code, ErrorCode::unsupported);
  EXPECT_NE(filter.error().message.find("filter 'no_such_filter' at line 2"), std::string::npos) << filter.error().message;
  auto test = Template::parse("{% for m in xs if m is no_such_test %}{% endfor %}");
  ASSERT_FALSE(test.ok());
  EXPECT_NE(test.error().message.find("test 'no_such_test'"), std::string::npos) << test.error().message;
  // A test named inside selectattr is only known at render time.
  auto late = render("{{ messages|selectattr('role', 'no_such_test')|list }}");
  ASSERT_FALSE(late.ok());
  EXPECT_NE(late.error().message.find("no_such_test"), std::string::npos);
}

TEST(Jinja, RunawayTemplatesFailInsteadOfCrashing) {
  auto recursive = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  ASSERT_FALSE(recursive.ok());
  EXPECT_NE(recursive.error().message.find("nested deeper"), std::string::npos) << recursive.error().message;
  auto huge = render("{{ 'abc' * 100000000000 }}");
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.error().message.find("too large"), std::string::npos) << huge.error().message;
  auto recursive_ok = render("{% macro count(n) %}{{ n }}{% if n > 0 %}{{ count(n - 1) }}{% endif %}{% endmacro %}{{ count(3) }}");
  ASSERT_TRUE(recursive_ok.ok()) << recursive_ok.error().message;
  EXPECT_EQ(recursive_ok.value(), "3210");
}

// A namespace can hold itself, directly or through a list (Jinja allows it; Python's collector frees
// the cycle). The render still answers, and the render's end empties the namespaces it made, which
// breaks such cycles of shared pointers (the jinja fuzzer's leak checker found one).
TEST(Jinja, NamespacesThatHoldThemselvesAreEmptiedWhenTheRenderEnds) {
  auto out = render("{% set ns = namespace(n=3) %}{% set ns.self = ns %}{% set ns.both = [ns, ns] %}"
                    "{{ ns.self.self.n }}{{ ns.both|length }}");
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out.value(), "32");
  Value kept, outside = Value::ns();
  {
    NamespaceScope scope;
    kept = Value::ns();
    kept.as_dict().set("self", kept);
    outside.as_dict().set("self", kept);
    EXPECT_EQ(kept.as_dict().items.size(), 1u);
  }
  EXPECT_TRUE(kept.as_dict().items.empty());           // made inside the scope: emptied at its end
  EXPECT_EQ(outside.as_dict().items.size(), 1u);       // made before it: left as it is
  outside.as_dict().items.clear();
}

TEST(Jinja, PythonFloatRepr) {
  // Python repr(float) for these values.
  EXPECT_EQ(python_float_repr(1.0), "1.0");
  EXPECT_EQ(python_float_repr(0.1), "0.1");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(1e-5), "1e-05");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(-1.5e-7), "-1.5e-07");
  EXPECT_EQ(python_float_repr(123456.789), "123456.789");
}

}  // namespace
}  // namespace troupe::jinja
