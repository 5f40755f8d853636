// The operator CLI's command table and argument parser. Each command declares its options
// once; parsing, --help and usage errors all come from that declaration.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "edgetrust/common/result.h"

namespace edgetrust::tools {

// Exit codes: 0 success, 1 the operation failed, 2 the command line is wrong.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct IntRange {
  int64_t min;
  int64_t max;
};

struct OptionSpec {
  std::string name;        // without the leading "--"
  std::string value_name;  // empty for a flag that takes no value
  std::string help;
  bool required = false;
  bool repeated = false;
  std::optional<IntRange> integer;  // set: the value must be an integer in this range
};

class ParsedArgs {
 public:
  bool Has(std::string_view name) const { return values_.count(std::string(name)) > 0; }
  // The value of an option (the last one if given more than once); `fallback` when absent.
  std::string Get(std::string_view name, std::string fallback = {}) const;
  // For options declared with an IntRange; the parser has already checked the value.
  int64_t GetInt(std::string_view name, int64_t fallback) const;
  std::vector<std::string> GetAll(std::string_view name) const;

  void Add(const std::string& name, std::string value) { values_[name].push_back(std::move(value)); }

 private:
  std::map<std::string, std::vector<std::string>, std::less<>> values_;
};

// A command line that parses but makes no sense (e.g. two options that exclude each other).
// Printed with the usage hint, exit 2.
struct UsageError {
  std::string message;
};

// What a command body returns. An Error is a runtime failure: printed as one
// "edgetrust: <message>" line, exit 1.
using CommandOutcome = std::variant<std::monostate, Error, UsageError>;

struct CommandSpec {
  std::string path;         // "site init"
  std::string summary;      // one line for the command list
  std::string description;  // the paragraph under the usage line in --help
  std::vector<OptionSpec> options;
  std::function<CommandOutcome(const ParsedArgs&)> run;
};

// Parses argv (without the program name) against `commands` and runs the matching one;
// returns the process exit code.
int Dispatch(const std::vector<CommandSpec>& commands, const std::vector<std::string>& args);

// Converts a Status into a CommandOutcome.
inline CommandOutcome ToOutcome(const Status& s) {
  if (s.ok()) return std::monostate{};
  return s.error();
}

}  // namespace edgetrust::tools
