// Reports read back and text written out (`moba compare`, `moba export`): the loader, the
// short descriptions of a record's configuration their tables print, and the output files.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace moba {

// Reads and parses a report, checks "format" and "format_version" and that "records" is an
// array. Throws std::invalid_argument whose message starts with the file's name:
//   "new.json: not valid JSON: ..."   "new.json: format_version 2, this build reads 1"
nlohmann::json load_report(const std::filesystem::path& path);

// "GQA 32x8 bf16 D128 L=8192,100 Bs=512 k=3"; more than four lengths print as
// "L=8192,8192,8192,8192,...(16 seqs, 131072 tokens)". Missing fields print as "?".
std::string describe_config(const nlohmann::json& config);

// A cell of a table: strings as they are, integers as integers, other numbers with `float_fmt`
// ("{}" = shortest round trip), arrays joined by ','; null and absent give "".
std::string cell_text(const nlohmann::json* value, const char* float_fmt = "{}");

// Writes `text` to `path`, "-" meaning stdout; throws std::invalid_argument naming the path.
void write_text_file(const std::string& path, const std::string& text);

}  // namespace moba
