#pragma once
// Jinja's filters, tests, global functions and the Python methods of str/dict/list values, as
// far as chat templates use them. Internal to the interpreter; errors are thrown as Failure.
#include <string>
#include <vector>

#include "text/jinja_value.hpp"

namespace troupe::jinja {

// Names apply_filter / apply_test handle: the parser rejects others at load time.
bool is_known_filter(const std::string& name);
bool is_known_test(const std::string& name);
Value apply_filter(const std::string& name, const Value& value, const CallArgs& args);
bool apply_test(const std::string& name, const Value& value, const CallArgs& args);
// A bound method such as "abc".startswith, or undefined when `obj` has no such method.
Value get_method(const Value& obj, const std::string& name);
// range, namespace, dict, raise_exception, strftime_now; undefined for other names.
Value get_global_function(const std::string& name);

// Python semantics shared by the interpreter and the builtins.
std::vector<Value> iterate(const Value& v);         // list items, dict keys, string chars
int64_t python_length(const Value& v);
bool contains(const Value& container, const Value& item);  // `item in container`
Value get_attribute(const Value& obj, const std::string& name);  // obj.name
Value get_item(const Value& obj, const Value& key);              // obj[key]

// str methods: strip (chars null or None: whitespace), split (sep null or None: runs of
// whitespace; maxsplit -1: all), ASCII upper/lower, replace (count -1: all).
std::string python_strip(const std::string& s, const Value* chars, bool left, bool right);
std::vector<std::string> python_split(const std::string& s, const Value* sep, int64_t maxsplit);
std::string ascii_case(const std::string& s, bool upper);  // upper()/lower(), see map_case
std::string python_title(const std::string& s, bool capitalize_only);  // str.title()/capitalize()
std::string jinja_title(const std::string& s);                         // the |title filter
std::string python_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count);

}  // namespace troupe::jinja
