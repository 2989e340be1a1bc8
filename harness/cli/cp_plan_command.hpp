// `moba cp-plan`: the context-parallel plan of one long sequence over N GPUs (harness/cp_plan.hpp)
// without running anything: each rank's tokens, causal and MoBA work, the K/V and block means it
// receives, and the device memory a training step would hold there, against what a GPU has. The
// multi-GPU run itself (issue 20) needs a several-GPU machine; this says which shapes it needs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace moba::cli {

struct CpPlanFlags {
    std::string seqlen = "1M";
    int heads = 32;
    int kv_heads = 8;
    int head_dim = 128;
    int block = 4096;
    int topk = 12;
    std::string dtype = "bf16";
    std::string gpus = "1,2,4,8";
    std::string gating = "none";  // none: causal work and memory only; cpu: float64 gating of drawn inputs
    std::string inputs = "normal";
    std::uint64_t seed = 1;
    double device_gib = 0;  // 0: this GPU's memory, or no fit verdict without a GPU
    std::string out;        // JSON (optional)
};

CLI::App* add_cp_plan_command(CLI::App& app, CpPlanFlags& flags);
int run_cp_plan(const CpPlanFlags& flags, const std::vector<std::string>& argv);

}  // namespace moba::cli
