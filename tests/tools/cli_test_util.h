// Helpers shared by the CLI tests: run the binary, run openssl, look at files.
#pragma once

#include <sys/stat.h>

#include <string>
#include <vector>

#include "edgetrust/testing/process.h"

namespace edgetrust::testing {

inline CommandResult Et(const std::vector<std::string>& args) {
  std::vector<std::string> argv{BinPath("edgetrust")};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

inline CommandResult OpenSsl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"/usr/bin/openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

inline unsigned FileMode(const std::string& path) {
  struct stat st{};
  if (stat(path.c_str(), &st) != 0) return 0xffffffff;
  return st.st_mode & 07777;
}

inline bool Exists(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0;
}

inline uid_t FileOwner(const std::string& path) {
  struct stat st{};
  stat(path.c_str(), &st);
  return st.st_uid;
}

inline int CountLines(const std::string& text) {
  int n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

}  // namespace edgetrust::testing
