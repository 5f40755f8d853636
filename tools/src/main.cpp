// edgetrust: the operator CLI.
#include <iostream>

#include "cli.h"
#include "commands.h"

#ifndef ET_VERSION
#define ET_VERSION "0.0.0"
#endif

namespace {

std::vector<edgetrust::tools::CommandSpec> AllCommands() {
  using namespace edgetrust::tools;
  std::vector<CommandSpec> all;
  for (auto group : {SiteCommands(), FactoryCommands(), StoreCommands(), AdminCommands()}) {
    for (auto& c : group) all.push_back(std::move(c));
  }
  all.push_back({.path = "version",
                 .summary = "print the version",
                 .description = "Prints the edgetrust version.",
                 .options = {},
                 .run = [](const ParsedArgs&) -> CommandOutcome {
                   std::cout << "edgetrust " << ET_VERSION << "\n";
                   return std::monostate{};
                 }});
  return all;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 1 && args[0] == "--version") args[0] = "version";
  return edgetrust::tools::Dispatch(AllCommands(), args);
}
