// The command groups of the `edgetrust` binary; main.cpp puts them in one table.
#pragma once

#include <vector>

#include "cli.h"

namespace edgetrust::tools {

std::vector<CommandSpec> SiteCommands();     // site init, site add-manufacturer, site import-manifest
std::vector<CommandSpec> FactoryCommands();  // factory init, factory provision, factory sign-csr
std::vector<CommandSpec> StoreCommands();    // revoke, claim, device list, device show
std::vector<CommandSpec> AdminCommands();    // admin status, admin reload (the gateway's admin API)

}  // namespace edgetrust::tools
