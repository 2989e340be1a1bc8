#include "harness/schema.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

namespace moba {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 14> kKeywords = {
    "type",     "enum",     "const",      "minimum",
    "minItems", "required", "properties", "additionalProperties",
    "items",    "allOf",    "if",         "then",
    "else",     "$ref"};
constexpr std::array<std::string_view, 7> kTypes = {"null",   "boolean", "object", "array",
                                                    "string", "number",  "integer"};
constexpr std::array<std::string_view, 6> kAnnotations = {"$schema", "$id",   "$comment",
                                                          "$defs",   "title", "description"};

// $ref chains deeper than this are a cycle in the schema, not a deep document.
constexpr int kMaxDepth = 256;

template <std::size_t N>
bool one_of(const std::array<std::string_view, N>& names, std::string_view name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

std::string pointer_text(const json::json_pointer& at) {
    const std::string s = at.to_string();
    return s.empty() ? "(root)" : s;
}

// 'text' for strings (as in "'fine' is not one of"), JSON for everything else.
std::string value_text(const json& v) {
    if (v.is_string()) return fmt::format("'{}'", v.get<std::string>());
    std::string s = v.dump();
    if (s.size() > 60) s = s.substr(0, 57) + "...";
    return s;
}

bool is_integral(const json& v) {
    if (v.is_number_integer()) return true;
    if (!v.is_number_float()) return false;
    const double d = v.get<double>();
    return std::isfinite(d) && d == std::floor(d);
}

bool has_type(const json& v, const std::string& type) {
    if (type == "null") return v.is_null();
    if (type == "boolean") return v.is_boolean();
    if (type == "object") return v.is_object();
    if (type == "array") return v.is_array();
    if (type == "string") return v.is_string();
    if (type == "number") return v.is_number();
    if (type == "integer") return is_integral(v);
    return false;
}

// JSON equality as JSON Schema defines it: 1 and 1.0 are equal.
bool json_equal(const json& a, const json& b) {
    if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
    if (a.type() != b.type()) return false;
    if (a.is_array()) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (!json_equal(a[i], b[i])) return false;
        return true;
    }
    if (a.is_object()) {
        if (a.size() != b.size()) return false;
        for (auto it = a.begin(); it != a.end(); ++it)
            if (!b.contains(it.key()) || !json_equal(it.value(), b[it.key()])) return false;
        return true;
    }
    return a == b;
}

const json* resolve_ref(const json& root, const std::string& ref) {
    if (ref.rfind("#", 0) != 0) return nullptr;
    try {
        const json::json_pointer ptr(ref.substr(1));
        return root.contains(ptr) ? &root.at(ptr) : nullptr;
    } catch (const json::exception&) {
        return nullptr;
    }
}

}  // namespace

SchemaValidator::SchemaValidator(json schema) : schema_(std::move(schema)) {
    check_schema(schema_, "#");
}

SchemaValidator SchemaValidator::from_file(const std::filesystem::path& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error(fmt::format("cannot read schema '{}'", path.string()));
    try {
        return SchemaValidator(json::parse(in));
    } catch (const json::parse_error& e) {
        throw std::runtime_error(
            fmt::format("schema '{}' is not valid JSON: {}", path.string(), e.what()));
    }
}

// Every keyword supported, every subschema well-formed, every $ref resolvable.
void SchemaValidator::check_schema(const json& s, const std::string& where) const {
    if (s.is_boolean()) return;
    if (!s.is_object())
        throw std::invalid_argument(fmt::format("schema at {} is not an object", where));
    for (auto it = s.begin(); it != s.end(); ++it) {
        const std::string& key = it.key();
        const json& v = it.value();
        const std::string here = where + "/" + key;
        if (one_of(kAnnotations, key)) {
            if (key == "$defs") {
                if (!v.is_object())
                    throw std::invalid_argument(fmt::format("{} is not an object", here));
                for (auto d = v.begin(); d != v.end(); ++d)
                    check_schema(d.value(), here + "/" + d.key());
            }
            continue;
        }
        if (!one_of(kKeywords, key))
            throw std::invalid_argument(
                fmt::format("schema keyword '{}' at {} is not supported", key, where));
        if (key == "properties") {
            if (!v.is_object())
                throw std::invalid_argument(fmt::format("{} is not an object", here));
            for (auto p = v.begin(); p != v.end(); ++p)
                check_schema(p.value(), here + "/" + p.key());
        } else if (key == "additionalProperties" || key == "items" || key == "if" ||
                   key == "then" || key == "else") {
            check_schema(v, here);
        } else if (key == "allOf") {
            if (!v.is_array()) throw std::invalid_argument(fmt::format("{} is not an array", here));
            for (std::size_t i = 0; i < v.size(); ++i)
                check_schema(v[i], fmt::format("{}/{}", here, i));
        } else if (key == "$ref") {
            if (!v.is_string() || !resolve_ref(schema_, v.get<std::string>()))
                throw std::invalid_argument(
                    fmt::format("$ref {} at {} does not resolve", v.dump(), where));
        } else if (key == "type") {
            for (const json& t : v.is_array() ? v : json::array({v}))
                if (!t.is_string() || !one_of(kTypes, t.get<std::string>()))
                    throw std::invalid_argument(
                        fmt::format("unknown type {} at {}", t.dump(), here));
        } else if (key == "required" || key == "enum") {
            if (!v.is_array()) throw std::invalid_argument(fmt::format("{} is not an array", here));
        } else if (key == "minimum" || key == "minItems") {
            if (!v.is_number())
                throw std::invalid_argument(fmt::format("{} is not a number", here));
        }
    }
}

std::vector<std::string> SchemaValidator::validate(const json& document) const {
    std::vector<std::string> errors;
    validate_at(schema_, document, json::json_pointer(), errors, 0);
    return errors;
}

void SchemaValidator::validate_at(const json& s, const json& v, const json::json_pointer& at,
                                  std::vector<std::string>& errors, int depth) const {
    const std::string where = pointer_text(at);
    if (depth > kMaxDepth) {
        errors.push_back(
            fmt::format("{}: schema nesting deeper than {} (a $ref cycle?)", where, kMaxDepth));
        return;
    }
    if (s.is_boolean()) {
        if (!s.get<bool>()) errors.push_back(fmt::format("{}: no value is allowed here", where));
        return;
    }
    if (s.contains("$ref"))
        validate_at(*resolve_ref(schema_, s["$ref"].get<std::string>()), v, at, errors, depth + 1);

    if (s.contains("type")) {
        const json& t = s["type"];
        const json types = t.is_array() ? t : json::array({t});
        const bool ok = std::any_of(types.begin(), types.end(), [&](const json& name) {
            return has_type(v, name.get<std::string>());
        });
        if (!ok) {
            errors.push_back(fmt::format("{}: {} is not of type {}", where, value_text(v),
                                         t.is_array() ? t.dump() : t.get<std::string>()));
            return;  // the other keywords would only repeat the complaint
        }
    }
    if (s.contains("enum")) {
        const json& e = s["enum"];
        if (std::none_of(e.begin(), e.end(), [&](const json& x) { return json_equal(x, v); }))
            errors.push_back(
                fmt::format("{}: {} is not one of {}", where, value_text(v), e.dump()));
    }
    if (s.contains("const") && !json_equal(s["const"], v))
        errors.push_back(
            fmt::format("{}: {} is not {}", where, value_text(v), value_text(s["const"])));
    if (s.contains("minimum") && v.is_number() && v.get<double>() < s["minimum"].get<double>())
        errors.push_back(fmt::format("{}: {} is less than the minimum {}", where, value_text(v),
                                     s["minimum"].dump()));
    if (v.is_array()) {
        if (s.contains("minItems") && static_cast<double>(v.size()) < s["minItems"].get<double>())
            errors.push_back(fmt::format("{}: {} items, fewer than the minimum {}", where, v.size(),
                                         s["minItems"].dump()));
        if (s.contains("items"))
            for (std::size_t i = 0; i < v.size(); ++i)
                validate_at(s["items"], v[i], at / i, errors, depth + 1);
    }
    if (v.is_object()) {
        if (s.contains("required"))
            for (const json& key : s["required"])
                if (!v.contains(key.get<std::string>()))
                    errors.push_back(fmt::format("{}: required property '{}' is missing", where,
                                                 key.get<std::string>()));
        const json* props = s.contains("properties") ? &s["properties"] : nullptr;
        for (auto it = v.begin(); it != v.end(); ++it) {
            if (props && props->contains(it.key())) {
                validate_at((*props)[it.key()], it.value(), at / it.key(), errors, depth + 1);
            } else if (s.contains("additionalProperties")) {
                const json& extra = s["additionalProperties"];
                if (extra.is_boolean() && !extra.get<bool>())
                    errors.push_back(
                        fmt::format("{}: property '{}' is not allowed", where, it.key()));
                else
                    validate_at(extra, it.value(), at / it.key(), errors, depth + 1);
            }
        }
    }
    if (s.contains("allOf"))
        for (const json& sub : s["allOf"]) validate_at(sub, v, at, errors, depth + 1);
    if (s.contains("if")) {
        std::vector<std::string> probe;
        validate_at(s["if"], v, at, probe, depth + 1);
        const char* branch = probe.empty() ? "then" : "else";
        if (s.contains(branch)) validate_at(s[branch], v, at, errors, depth + 1);
    }
}

}  // namespace moba
