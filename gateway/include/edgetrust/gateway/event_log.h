// One line per event on stdout: "<UTC time> <level> <event> key=value …". Values with spaces
// or quotes are quoted, so a line is easy to grep and to parse.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "edgetrust/gateway/options.h"

namespace edgetrust::gateway {

using LogFields = std::vector<std::pair<std::string_view, std::string>>;

class EventLog {
 public:
  explicit EventLog(LogLevel level = LogLevel::kInfo) : level_(level) {}
  void Write(LogLevel level, std::string_view event, const LogFields& fields = {}) const;
  void Info(std::string_view event, const LogFields& fields = {}) const {
    Write(LogLevel::kInfo, event, fields);
  }
  void Warn(std::string_view event, const LogFields& fields = {}) const {
    Write(LogLevel::kWarn, event, fields);
  }
  void Error(std::string_view event, const LogFields& fields = {}) const {
    Write(LogLevel::kError, event, fields);
  }
  void Debug(std::string_view event, const LogFields& fields = {}) const {
    Write(LogLevel::kDebug, event, fields);
  }
  bool Enabled(LogLevel level) const { return level >= level_; }

 private:
  LogLevel level_;
};

}  // namespace edgetrust::gateway
