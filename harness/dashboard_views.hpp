// `moba dashboard`: the data of the dashboard's views, computed from the reports. The page
// (harness/dashboard/assets/dashboard.js) only draws it: every number it shows is a field of a
// report, or a verdict of report_compare's rules (judge, compare_reports) on two of them.
//
// dashboard_data() returns the object data.js assigns to window.MOBA_DASHBOARD:
//   reports      one row per report shown, sorted by GPU, then start time: id, path, tool, gpu,
//                commit (meta.git_sha, 7 digits), dirty, started, complete, records, outcomes
//   problems     the files not shown (DashboardProblem), invalid ones first
//   fig2         time[] and speedup[] rows {gpu, figure, length, series, value, report, commit}
//                from `moba paper` forward records (those with "published"), the latest per
//                (GPU, figure, implementation, length): ours (timing.median_ms,
//                speedup_vs_dense), the published points the record carries, and the ideal
//                speedup (dense pairs / MoBA pairs)
//   throughput   rows {gpu, layout, phase, impl, series, length, tflops, ...} of passed bench
//                records, the latest per (GPU, compare's match key)
//   history      rows {series, label, gpu, commit, started, median_ms, min_ms, max_ms,
//                rel_stddev, verdict, change} of the bench keys measured at two or more commits,
//                each point judged against the previous one by compare's judge()
//   correctness  outcomes[] (records by outcome per report), worst[] (the largest ratio per
//                report, check and tensor), ties[] (gating counts per report), bad[] (every
//                incorrect or failed record)
//   comparisons  compare_reports() of every two reports that share a match key, older as BASE
#pragma once

#include <nlohmann/json.hpp>

#include "harness/dashboard_inputs.hpp"

namespace moba {

// threshold: as compare_reports' (a fraction, 0.05 = 5%).
nlohmann::json dashboard_data(const DashboardInputs& inputs, double threshold);

}  // namespace moba
