// One logging sink with severities, replaceable by the caller (tests install their own). In
// multi-rank runs rank 0 speaks for the job; other ranks log warnings and errors only.
#pragma once

#include <functional>
#include <string>

namespace drgrad::engine {

enum class Severity { kDebug, kInfo, kWarning, kError };

using LogSink = std::function<void(Severity, const std::string&)>;

// Replaces the sink; returns the previous one. The default writes "[drgrad] message" to stderr
// (warnings and errors prefixed with their severity).
LogSink set_log_sink(LogSink sink);
void log(Severity severity, const std::string& message);
inline void log_info(const std::string& message) {
  log(Severity::kInfo, message);
}
inline void log_warning(const std::string& message) {
  log(Severity::kWarning, message);
}

}  // namespace drgrad::engine
