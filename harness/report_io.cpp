#include "harness/report_io.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>

#include "harness/report.hpp"

namespace moba {

using nlohmann::json;

json load_report(const std::filesystem::path& path) {
    const std::string name = path.string();
    std::ifstream in(path);
    if (!in)
        throw std::invalid_argument(
            fmt::format("{}: cannot read ({})", name, std::strerror(errno)));
    if (std::filesystem::is_directory(path))
        throw std::invalid_argument(fmt::format("{}: is a directory, not a report", name));
    json doc;
    try {
        doc = json::parse(in);
    } catch (const json::parse_error& e) {
        throw std::invalid_argument(fmt::format("{}: not valid JSON: {}", name, e.what()));
    }
    if (!doc.is_object() || !doc.contains("format"))
        throw std::invalid_argument(
            fmt::format("{}: not a {} report (no \"format\" key)", name, kReportFormat));
    if (doc["format"] != kReportFormat)
        throw std::invalid_argument(fmt::format("{}: format is {}, expected \"{}\"", name,
                                                doc["format"].dump(), kReportFormat));
    if (!doc.contains("format_version") || doc["format_version"] != kReportFormatVersion)
        throw std::invalid_argument(fmt::format("{}: format_version {}, this build reads {}", name,
                                                doc.value("format_version", json()).dump(),
                                                kReportFormatVersion));
    if (!doc.contains("records") || !doc["records"].is_array())
        throw std::invalid_argument(
            fmt::format("{}: \"records\" is missing or not an array", name));
    return doc;
}

std::string cell_text(const json* v, const char* float_fmt) {
    if (!v || v->is_null()) return "";
    if (v->is_string()) return v->get<std::string>();
    if (v->is_number_integer()) return v->dump();
    if (v->is_number_float()) return fmt::format(fmt::runtime(float_fmt), v->get<double>());
    if (v->is_array()) {
        std::string out;
        for (const json& x : *v) {
            if (!out.empty()) out += ',';
            out += cell_text(&x, float_fmt);
        }
        return out;
    }
    return v->dump();
}

std::string describe_config(const json& c) {
    auto field = [&](const char* key) {
        const std::string s = c.is_object() && c.contains(key) ? cell_text(&c[key]) : "";
        return s.empty() ? std::string("?") : s;
    };
    std::string lens = "?";
    if (c.is_object() && c.contains("seqlens") && c["seqlens"].is_array()) {
        const json& l = c["seqlens"];
        lens.clear();
        for (std::size_t i = 0; i < l.size() && i < 4; ++i) {
            if (i) lens += ',';
            lens += cell_text(&l[i]);
        }
        if (l.size() > 4)
            lens += fmt::format(",...({} seqs, {} tokens)", l.size(), field("total_tokens"));
    }
    return fmt::format("{} {}x{} {} D{} L={} Bs={} k={}", field("layout"), field("heads_q"),
                       field("heads_kv"), field("dtype"), field("head_dim"), lens, field("block"),
                       field("topk"));
}

void write_text_file(const std::string& path, const std::string& text) {
    if (path == "-") {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        return;
    }
    std::ofstream out(path, std::ios::binary);
    if (!out)
        throw std::invalid_argument(
            fmt::format("cannot write '{}' ({})", path, std::strerror(errno)));
    out << text;
    out.close();
    if (!out) throw std::invalid_argument(fmt::format("writing '{}' failed", path));
}

}  // namespace moba
