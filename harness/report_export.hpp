// `moba export`: one row per record of a report, as CSV (RFC 4180) or a markdown table.
// Columns, from the record (bench and check records share one table):
//   layout, seqlens, heads, kv_heads, head_dim, block, topk, dtype   config.*
//   impl                                                             impl
//   phase/check                                                      phase (bench), check (check)
//   tensor                                                           tensor (check)
//   median_ms                                                        timing.median_ms (bench)
//   tflops, speedup_vs_dense, ideal_speedup                          (bench)
//   max_abs_err, ratio                                               (check)
//   outcome                                                          outcome
// A field that is absent, or null (not finite, not measured), gives an empty cell.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moba {

const std::vector<std::string>& export_columns();

// Numbers as the shortest text that reads back to the same double ("{}" of fmt).
std::vector<std::vector<std::string>> export_rows(const nlohmann::json& report);

// RFC 4180: CRLF line ends, a header line, fields holding ',', '"', CR or LF enclosed in
// double quotes with inner quotes doubled.
std::string csv_field(const std::string& text);
std::string export_csv(const nlohmann::json& report);

// A GitHub-flavoured markdown table; numbers with 4 significant digits, '|' escaped.
std::string export_markdown(const nlohmann::json& report);

}  // namespace moba
