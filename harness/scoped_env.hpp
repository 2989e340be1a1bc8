// Sets (or, with nullptr, removes) an environment variable for a scope, then restores what was
// there. For the kernels' switches that are read at every call (kernels/moba/head_passes.hpp's
// accumulator budget): the harness's second calls and the tests set them around one call.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>

namespace moba {

class ScopedEnv {
public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value != nullptr) ::setenv(name, value, 1);
        else ::unsetenv(name);
    }
    ~ScopedEnv() {
        if (old_) ::setenv(name_, old_->c_str(), 1);
        else ::unsetenv(name_);
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    const char* name_;
    std::optional<std::string> old_;
};

}  // namespace moba
