// Key and certificate files: written to a temp file in the same directory, then linked or
// renamed into place, so a reader never sees half a key and nothing is overwritten by accident.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "der.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/pki/key.h"

namespace edgetrust::pki {

namespace {

Error IoError(const std::string& what, const std::string& path) {
  return MakeError(ErrorCode::kIo, what + " " + path + ": " + std::strerror(errno));
}

Result<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return MakeError(ErrorCode::kNotFound, "no such file: " + path);
    return IoError("cannot read", path);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return IoError("cannot read", path);
  return ss.str();
}

Status WriteFileSafely(const std::string& path, std::string_view data, mode_t mode, bool force) {
  if (!force && access(path.c_str(), F_OK) == 0) {
    return MakeError(ErrorCode::kAlreadyExists, path + " exists (use --force to overwrite)");
  }
  std::string tmp = path + ".tmp.XXXXXX";
  int fd = mkstemp(tmp.data());
  if (fd < 0) return IoError("cannot create", tmp);
  auto fail = [&](const std::string& what) {
    Error e = IoError(what, path);
    close(fd);
    unlink(tmp.c_str());
    return e;
  };
  if (fchmod(fd, mode) != 0) return fail("cannot chmod");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write");
    }
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) return fail("cannot sync");
  if (close(fd) != 0) {
    Error e = IoError("cannot close", path);
    unlink(tmp.c_str());
    return e;
  }
  if (force) {
    if (rename(tmp.c_str(), path.c_str()) != 0) {
      Error e = IoError("cannot rename into", path);
      unlink(tmp.c_str());
      return e;
    }
    return OkStatus();
  }
  // link() refuses to replace an existing file, closing the race with the access() check.
  if (link(tmp.c_str(), path.c_str()) != 0) {
    Error e = errno == EEXIST
                  ? MakeError(ErrorCode::kAlreadyExists, path + " exists (use --force to overwrite)")
                  : IoError("cannot create", path);
    unlink(tmp.c_str());
    return e;
  }
  unlink(tmp.c_str());
  return OkStatus();
}

}  // namespace

Result<PrivateKey> LoadPrivateKeyFile(const std::string& path) {
  ET_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  auto key = text.find("-----BEGIN") != std::string::npos ? PrivateKey::FromPem(text)
                                                          : PrivateKey::FromDer(AsBytes(text));
  std::fill(text.begin(), text.end(), '\0');
  if (!key.ok()) return MakeError(key.error().code, path + ": " + key.error().message);
  return key;
}

Status WritePrivateKeyFile(const std::string& path, const PrivateKey& key, bool force) {
  ET_ASSIGN_OR_RETURN(std::string pem, key.ToPem());
  Status st = WriteFileSafely(path, pem, 0600, force);
  std::fill(pem.begin(), pem.end(), '\0');
  return st;
}

Result<Certificate> LoadCertificateFile(const std::string& path) {
  ET_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  auto cert = text.find("-----BEGIN") != std::string::npos ? ParseCertificatePem(text)
                                                           : ParseCertificateDer(AsBytes(text));
  if (!cert.ok()) return MakeError(cert.error().code, path + ": " + cert.error().message);
  return cert;
}

Result<std::vector<Certificate>> LoadCertificateBundleFile(const std::string& path) {
  ET_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  auto certs = ParseCertificateBundlePem(text);
  if (!certs.ok()) return MakeError(certs.error().code, path + ": " + certs.error().message);
  return certs;
}

Status WriteCertificateFile(const std::string& path, std::string_view pem, bool force) {
  return WriteFileSafely(path, pem, 0644, force);
}

}  // namespace edgetrust::pki
