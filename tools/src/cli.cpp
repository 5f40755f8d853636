#include "cli.h"

#include <charconv>
#include <cstdio>
#include <iostream>
#include <set>
#include <sstream>

namespace edgetrust::tools {

std::string ParsedArgs::Get(std::string_view name, std::string fallback) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return fallback;
  return it->second.back();
}

int64_t ParsedArgs::GetInt(std::string_view name, int64_t fallback) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return fallback;
  int64_t v = fallback;
  const std::string& s = it->second.back();
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::vector<std::string> ParsedArgs::GetAll(std::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return {};
  return it->second;
}

namespace {

bool IsHelp(const std::string& a) { return a == "--help" || a == "-h" || a == "help"; }

std::vector<std::string> Words(const std::string& path) {
  std::vector<std::string> out;
  std::istringstream in(path);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::string UsageLine(const CommandSpec& c) {
  std::string line = "usage: edgetrust " + c.path;
  for (const auto& o : c.options) {
    std::string part = "--" + o.name;
    if (!o.value_name.empty()) part += " " + o.value_name;
    if (o.repeated) part += "...";
    line += o.required ? " " + part : " [" + part + "]";
  }
  return line;
}

void PrintCommandHelp(const CommandSpec& c) {
  std::cout << UsageLine(c) << "\n\n" << c.description << "\n";
  if (!c.options.empty()) std::cout << "\noptions:\n";
  for (const auto& o : c.options) {
    std::string left = "  --" + o.name + (o.value_name.empty() ? "" : " " + o.value_name);
    if (left.size() < 28) left.resize(28, ' ');
    else left += "\n" + std::string(28, ' ');
    std::cout << left << o.help;
    if (o.required) std::cout << " (required)";
    if (o.repeated) std::cout << " (may be repeated)";
    std::cout << "\n";
  }
  std::cout << "  --help                    show this help\n";
}

// Lists the commands under `prefix` (empty: all of them).
void PrintCommandList(const std::vector<CommandSpec>& commands, const std::string& prefix) {
  if (prefix.empty()) {
    std::cout << "usage: edgetrust <command> [options]\n\n"
                 "edgetrust: operator tools for an edgetrust site and its device factories.\n\n"
                 "commands:\n";
  } else {
    std::cout << "usage: edgetrust " << prefix << " <command> [options]\n\ncommands:\n";
  }
  for (const auto& c : commands) {
    if (!prefix.empty() && c.path.rfind(prefix + " ", 0) != 0) continue;
    std::string left = "  " + c.path;
    if (left.size() < 28) left.resize(28, ' ');
    else left += "  ";
    std::cout << left << c.summary << "\n";
  }
  std::cout << "\nRun 'edgetrust " << (prefix.empty() ? "" : prefix + " ")
            << "<command> --help' for a command's options.\n";
}

int Usage(const std::string& where, const std::string& message) {
  std::cerr << "edgetrust" << (where.empty() ? "" : " " + where) << ": " << message << "\n"
            << "Try 'edgetrust " << (where.empty() ? "" : where + " ") << "--help'.\n";
  return kExitUsage;
}

bool ValidInteger(const std::string& text, const IntRange& range) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  return ec == std::errc() && end == text.data() + text.size() && v >= range.min &&
         v <= range.max;
}

int ParseAndRun(const CommandSpec& c, const std::vector<std::string>& args, size_t first) {
  ParsedArgs parsed;
  for (size_t i = first; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      PrintCommandHelp(c);
      return kExitOk;
    }
  }
  for (size_t i = first; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0 || a.size() == 2) {
      return Usage(c.path, "unexpected argument '" + a + "'");
    }
    std::string name = a.substr(2);
    std::optional<std::string> inline_value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name.resize(eq);
    }
    const OptionSpec* spec = nullptr;
    for (const auto& o : c.options)
      if (o.name == name) spec = &o;
    if (spec == nullptr) return Usage(c.path, "unknown option '--" + name + "'");
    if (parsed.Has(name) && !spec->repeated) {
      return Usage(c.path, "option '--" + name + "' given more than once");
    }
    if (spec->value_name.empty()) {
      if (inline_value) return Usage(c.path, "option '--" + name + "' takes no value");
      parsed.Add(name, "");
      continue;
    }
    std::string value;
    if (inline_value) {
      value = *inline_value;
    } else {
      if (i + 1 >= args.size()) {
        return Usage(c.path, "option '--" + name + "' needs a value (" + spec->value_name + ")");
      }
      value = args[++i];
    }
    if (spec->integer && !ValidInteger(value, *spec->integer)) {
      return Usage(c.path, "option '--" + name + "' must be an integer from " +
                               std::to_string(spec->integer->min) + " to " +
                               std::to_string(spec->integer->max) + ", not '" + value + "'");
    }
    parsed.Add(name, std::move(value));
  }
  for (const auto& o : c.options) {
    if (o.required && !parsed.Has(o.name)) return Usage(c.path, "missing --" + o.name);
  }
  CommandOutcome outcome;
  try {
    outcome = c.run(parsed);
  } catch (const std::exception& e) {
    outcome = MakeError(ErrorCode::kInternal, std::string("unexpected: ") + e.what());
  }
  if (auto* usage = std::get_if<UsageError>(&outcome)) return Usage(c.path, usage->message);
  if (auto* error = std::get_if<Error>(&outcome)) {
    std::cerr << "edgetrust: " << error->message << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

int Dispatch(const std::vector<CommandSpec>& commands, const std::vector<std::string>& args) {
  if (args.empty()) return Usage("", "no command given");
  if (IsHelp(args[0])) {
    PrintCommandList(commands, "");
    return kExitOk;
  }
  // Longest command path that matches the leading words wins ("site init" before "site").
  const CommandSpec* best = nullptr;
  size_t best_words = 0;
  for (const auto& c : commands) {
    auto words = Words(c.path);
    if (words.size() > args.size()) continue;
    bool match = true;
    for (size_t i = 0; i < words.size() && match; ++i) match = words[i] == args[i];
    if (match && words.size() > best_words) {
      best = &c;
      best_words = words.size();
    }
  }
  if (best != nullptr) return ParseAndRun(*best, args, best_words);

  // A group word ("site", "factory", "device") without a known subcommand.
  std::set<std::string> groups;
  for (const auto& c : commands) {
    auto words = Words(c.path);
    if (words.size() > 1) groups.insert(words[0]);
  }
  if (groups.count(args[0]) > 0) {
    if (args.size() == 1) return Usage(args[0], "missing command");
    if (IsHelp(args[1])) {
      PrintCommandList(commands, args[0]);
      return kExitOk;
    }
    return Usage(args[0], "unknown command '" + args[1] + "'");
  }
  return Usage("", "unknown command '" + args[0] + "'");
}

}  // namespace edgetrust::tools
