// Helpers shared by the policy parser and the policy text editor; not part of the public API.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>
#include <vector>

#include "edgetrust/common/result.h"

namespace edgetrust::policies::internal {

// "source:line:column: reason" from yaml-cpp's 0-based mark; without position when line < 0.
std::string FormatAt(std::string_view source, int line, int column, std::string_view reason);

// Every document of the text; never throws (size, NUL bytes and syntax errors become Errors).
Result<std::vector<YAML::Node>> LoadYamlDocuments(std::string_view yaml, std::string_view source);

Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes);

}  // namespace edgetrust::policies::internal
