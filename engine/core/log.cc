// The process-wide log sink.
#include "engine/core/log.h"

#include <iostream>
#include <mutex>

namespace drgrad::engine {

namespace {
std::mutex sink_mutex;
void default_sink(Severity severity, const std::string& message) {
  const char* prefix = severity == Severity::kWarning ? "warning: "
                       : severity == Severity::kError ? "error: "
                                                      : "";
  std::cerr << "[drgrad] " << prefix << message << "\n";
}
LogSink& current_sink() {
  static LogSink sink = default_sink;
  return sink;
}
}  // namespace

LogSink set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lock(sink_mutex);
  LogSink previous = current_sink();
  current_sink() = sink ? std::move(sink) : LogSink(default_sink);
  return previous;
}

void log(Severity severity, const std::string& message) {
  std::lock_guard<std::mutex> lock(sink_mutex);
  current_sink()(severity, message);
}

}  // namespace drgrad::engine
