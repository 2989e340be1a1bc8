// README.md's implementation table is `moba list --markdown` verbatim (so the README cannot
// drift from the registry), and what that table says about each entry's dtypes and head dims
// is exactly what the entry's supports() accepts (so the registry's listing cannot lie).
#include <algorithm>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "harness/cli/list_command.hpp"
#include "harness/registry.hpp"

namespace moba {
namespace {

// The lines between these two in README.md are the generated table.
constexpr char kBeginMarker[] =
    "<!-- BEGIN moba list markdown: generated from the registry, checked by test_readme -->";
constexpr char kEndMarker[] = "<!-- END moba list markdown -->";

std::string read_readme() {
    std::ifstream in(MOBA_README_PATH);  // the source tree's README, set by CMake
    if (!in) ADD_FAILURE() << "cannot open " << MOBA_README_PATH;
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The text between the marker lines, or nullopt when either marker line is missing.
std::optional<std::string> generated_block(const std::string& readme) {
    const std::string begin = std::string(kBeginMarker) + "\n";
    const std::string end = std::string("\n") + kEndMarker;
    const auto start = readme.find(begin);
    if (start == std::string::npos) return std::nullopt;
    const auto body = start + begin.size();
    const auto stop = readme.find(end, body);
    if (stop == std::string::npos) return std::nullopt;
    return readme.substr(body, stop - body + 1);  // keeps the table's last newline
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

TEST(ReadmeImplementationTable, IsMobaListMarkdown) {
    const auto block = generated_block(read_readme());
    ASSERT_TRUE(block.has_value()) << "README.md lacks the lines '" << kBeginMarker << "' and '"
                                   << kEndMarker << "' around its implementation table";
    EXPECT_EQ(*block, cli::implementation_table_markdown(registry()))
        << "README.md's implementation table differs from the registry: replace the lines "
           "between its markers with the output of `moba list --markdown`";
}

TEST(ReadmeImplementationTable, HasOneRowPerRegisteredImplementation) {
    const std::vector<std::string> lines =
        lines_of(cli::implementation_table_markdown(registry()));
    ASSERT_EQ(lines.size(), registry().size() + 2);  // header, separator, one row each
    EXPECT_EQ(lines[0].rfind("| name |", 0), 0u) << lines[0];
    for (std::size_t i = 0; i < registry().size(); ++i)
        EXPECT_EQ(lines[i + 2].rfind(fmt::format("| `{}` |", registry()[i].name), 0), 0u)
            << lines[i + 2];
}

// A small problem every entry implements apart from its dtype and head dim.
Problem small_problem(DType dtype, int head_dim) {
    Problem p;
    p.seqlens = {40, 7};
    p.heads_q = 2;
    p.heads_kv = 1;
    p.head_dim = head_dim;
    p.block = 16;
    p.topk = 2;
    p.dtype = dtype;
    return p;
}

TEST(RegistryListing, HeadDimsAreExactlyWhatSupportsAccepts) {
    for (const auto& impl : registry()) {
        int accepted = 0;
        for (const DType dtype : impl.dtypes) {
            for (int d = 1; d <= 512; ++d) {
                const Support s = impl.supports(small_problem(dtype, d));
                accepted += s.ok ? 1 : 0;
                EXPECT_EQ(impl.head_dims.contains(d), s.ok)
                    << impl.name << " " << to_string(dtype) << " D " << d << " is listed as "
                    << impl.head_dims.describe() << "; supports() says: "
                    << (s.ok ? "yes" : s.reason);
            }
        }
        EXPECT_GT(accepted, 0) << impl.name << " accepts no head dim at all";
    }
}

TEST(RegistryListing, DtypesAreExactlyWhatSupportsAccepts) {
    for (const auto& impl : registry()) {
        const int head_dim = impl.head_dims.largest();
        for (const DType dtype : {DType::bf16, DType::f16, DType::f32}) {
            const bool listed =
                std::find(impl.dtypes.begin(), impl.dtypes.end(), dtype) != impl.dtypes.end();
            const Support s = impl.supports(small_problem(dtype, head_dim));
            EXPECT_EQ(listed, s.ok) << impl.name << " " << to_string(dtype) << " D " << head_dim
                                    << ": " << (s.ok ? "accepted" : s.reason);
        }
    }
}

TEST(HeadDimSet, DescribesAndContains) {
    const HeadDimSet tensor_core = HeadDimSet::exactly({128, 64});
    EXPECT_EQ(tensor_core.describe(), "64, 128");
    EXPECT_EQ(tensor_core.largest(), 128);
    EXPECT_TRUE(tensor_core.contains(64));
    EXPECT_FALSE(tensor_core.contains(96));

    const HeadDimSet any = HeadDimSet::up_to(256);
    EXPECT_EQ(any.describe(), "≤ 256");
    EXPECT_TRUE(any.contains(1));
    EXPECT_TRUE(any.contains(256));
    EXPECT_FALSE(any.contains(0));
    EXPECT_FALSE(any.contains(257));

    const HeadDimSet aligned = HeadDimSet::up_to(256, 8);
    EXPECT_EQ(aligned.describe(), "≤ 256, multiple of 8");
    EXPECT_TRUE(aligned.contains(248));
    EXPECT_FALSE(aligned.contains(100));
}

}  // namespace
}  // namespace moba
