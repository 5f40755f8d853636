// File output for the CLI: private keys 0600, nothing overwritten without --force, every file
// appears whole or not at all (written beside its target, then linked or renamed into place).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "edgetrust/common/result.h"

namespace edgetrust::tools {

inline constexpr unsigned kPrivateKeyMode = 0600;
inline constexpr unsigned kPublicFileMode = 0644;

// kAlreadyExists naming the first of `paths` that exists, unless `force`.
Status RefuseExisting(const std::vector<std::string>& paths, bool force);

enum class Durability {
  kSync,      // fsync before the file takes its name
  kDeferred,  // the caller calls SyncFilesystem() once after a batch (thousands of devices)
};

// Writes `content` to `path` with `mode` (exactly, whatever the umask). Without `force` an
// existing file is never replaced, even one that appears while we write.
Status WriteFileAtomic(const std::string& path, const std::string& content, unsigned mode,
                       bool force, Durability durability = Durability::kSync);

// Flushes everything written to the filesystem holding `path` (syncfs).
Status SyncFilesystem(const std::string& path);

Result<std::string> ReadTextFile(const std::string& path);

// Creates `path` (and parents) if missing.
Status MakeDirectories(const std::string& path, unsigned mode);

// `path` made absolute against the current directory, lexically normalised.
std::string AbsolutePath(const std::string& path);

bool FileExists(const std::string& path);

// Directory of the running executable (/proc/self/exe); empty if it cannot be read.
std::string ExecutableDirectory();

struct Owner {
  uid_t uid;
  gid_t gid;
};

// The `mosquitto` user when we run as root and it exists: the broker drops root to it, so
// files it must read are handed to it. nullopt otherwise (nothing to do).
std::optional<Owner> BrokerOwner();

Status ChangeOwner(const std::string& path, const Owner& owner);

}  // namespace edgetrust::tools
