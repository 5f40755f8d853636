// A whole edgetrust site on disk for integration tests, made by the real `edgetrust` CLI:
// site PKI + policy + store + mosquitto.conf, one factory per manufacturer (added to the site's
// trust), and provisioned devices with birth certificates. Header-only so any test binary that
// links edgetrust_testsupport can use it; the binary must depend on the `edgetrust` target.
//
//   TempDir tmp;
//   auto site = SiteFixture::Create(tmp, {.site_id = "edge-01",
//                                         .manufacturers = {{.name = "acme", .count = 3}}});
//   auto broker = Broker::Start(tmp.path(), site.MosquittoConfig(), {site.port});
//   TestClient c(site.devices[0].id);
//   c.Connect(site.port, site.DeviceTls(0));
//
// Failures throw std::runtime_error carrying the failing command and its output (GoogleTest
// reports it as the test's failure).
#pragma once

#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgetrust/testing/mqtt_client.h"
#include "edgetrust/testing/process.h"

namespace edgetrust::testing {

struct ManufacturerSpec {
  std::string name = "acme";
  std::string model = "thermo-1";
  int count = 1;           // devices to provision (0: factory only)
  std::string prefix;      // device id prefix; empty: "<name>-"
  bool trusted = true;     // false: the factory exists but is not added to the site
};

struct SiteOptions {
  std::string site_id = "site-1";
  std::vector<ManufacturerSpec> manufacturers = {ManufacturerSpec{}};
  int port = 0;                    // 0: a free loopback port
  bool import_manifests = false;   // import each trusted factory's manifest.csv into the store
  std::string plugin;              // empty: BinPath("mosquitto_edgetrust.so")
};

struct DeviceFiles {
  std::string id;
  std::string manufacturer;
  std::string model;
  std::string dir;   // OUT/<id>
  std::string cert;  // birth.pem
  std::string key;   // birth.key (0600)
};

struct ManufacturerFiles {
  std::string name;
  std::string factory_dir;
  std::string ca_cert;    // factory ca.pem
  std::string ca_key;     // factory ca.key
  std::string devices_dir;
  std::string manifest;   // devices_dir/manifest.csv
  bool trusted = true;
  std::vector<DeviceFiles> devices;
};

struct SiteFixture {
  std::string site_id;
  int port = 0;
  std::string dir;  // the site directory
  std::string site_ca_cert, site_ca_key;
  std::string trust;  // trust.pem: site CA + trusted manufacturer CAs
  std::string broker_cert, broker_key;
  std::string gateway_cert, gateway_key;  // CN edgetrust-gateway
  std::string admin_cert, admin_key;      // CN ops-admin
  std::string policy;                     // policy.yaml
  std::string mosquitto_conf;             // listener on `port`, TLS, plugin lines
  std::string store;                      // LMDB store directory
  std::map<std::string, ManufacturerFiles> manufacturers;
  std::vector<DeviceFiles> devices;       // every provisioned device, in creation order

  // Runs `edgetrust args...`; throws with its output unless it exits 0. Returns stdout.
  static std::string Cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv{BinPath("edgetrust")};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = RunCommand(argv);
    if (r.exit_code != 0) {
      std::string line;
      for (const auto& a : argv) line += a + " ";
      throw std::runtime_error("command failed (exit " + std::to_string(r.exit_code) +
                               "): " + line + "\nstdout: " + r.out + "\nstderr: " + r.err);
    }
    return r.out;
  }

  static SiteFixture Create(TempDir& tmp, const SiteOptions& options = {}) {
    SiteFixture s;
    s.site_id = options.site_id;
    s.port = options.port != 0 ? options.port : FreeLoopbackPort();
    s.dir = tmp / "site";
    s.site_ca_cert = s.dir + "/site-ca.pem";
    s.site_ca_key = s.dir + "/site-ca.key";
    s.trust = s.dir + "/trust.pem";
    s.broker_cert = s.dir + "/broker.pem";
    s.broker_key = s.dir + "/broker.key";
    s.gateway_cert = s.dir + "/gateway.pem";
    s.gateway_key = s.dir + "/gateway.key";
    s.admin_cert = s.dir + "/admin.pem";
    s.admin_key = s.dir + "/admin.key";
    s.policy = s.dir + "/policy.yaml";
    s.mosquitto_conf = s.dir + "/mosquitto.conf";
    s.store = s.dir + "/store";
    std::string plugin = options.plugin.empty() ? BinPath("mosquitto_edgetrust.so") : options.plugin;
    Cli({"site", "init", "--dir", s.dir, "--site", s.site_id, "--port", std::to_string(s.port),
         "--plugin", plugin});

    for (const auto& m : options.manufacturers) {
      ManufacturerFiles f;
      f.name = m.name;
      f.trusted = m.trusted;
      f.factory_dir = tmp / ("factory-" + m.name);
      f.ca_cert = f.factory_dir + "/ca.pem";
      f.ca_key = f.factory_dir + "/ca.key";
      f.devices_dir = tmp / ("devices-" + m.name);
      f.manifest = f.devices_dir + "/manifest.csv";
      Cli({"factory", "init", "--dir", f.factory_dir, "--manufacturer", m.name});
      if (m.trusted) {
        Cli({"site", "add-manufacturer", "--dir", s.dir, "--name", m.name, "--ca", f.ca_cert});
      }
      if (m.count > 0) {
        std::string prefix = m.prefix.empty() ? m.name + "-" : m.prefix;
        Cli({"factory", "provision", "--factory", f.factory_dir, "--count",
             std::to_string(m.count), "--prefix", prefix, "--model", m.model, "--out",
             f.devices_dir});
        for (int i = 1; i <= m.count; ++i) {
          char seq[16];
          std::snprintf(seq, sizeof seq, "%06d", i);
          DeviceFiles d;
          d.id = prefix + seq;
          d.manufacturer = m.name;
          d.model = m.model;
          d.dir = f.devices_dir + "/" + d.id;
          d.cert = d.dir + "/birth.pem";
          d.key = d.dir + "/birth.key";
          f.devices.push_back(d);
          s.devices.push_back(d);
        }
        if (options.import_manifests && m.trusted) {
          Cli({"site", "import-manifest", "--store", s.store, "--manifest", f.manifest,
               "--manufacturer", m.name});
        }
      }
      s.manufacturers[m.name] = std::move(f);
    }
    return s;
  }

  const DeviceFiles& Device(const std::string& id) const {
    for (const auto& d : devices)
      if (d.id == id) return d;
    throw std::runtime_error("no device " + id + " in the site fixture");
  }

  // TLS files for TestClient::Connect: the site CA verifies the broker.
  TlsFiles DeviceTls(size_t index) const {
    return {site_ca_cert, devices.at(index).cert, devices.at(index).key};
  }
  TlsFiles DeviceTls(const std::string& id) const {
    const auto& d = Device(id);
    return {site_ca_cert, d.cert, d.key};
  }
  TlsFiles GatewayTls() const { return {site_ca_cert, gateway_cert, gateway_key}; }
  TlsFiles AdminTls() const { return {site_ca_cert, admin_cert, admin_key}; }

  // The generated mosquitto.conf (listener on `port`, TLS, plugin lines), for Broker::Start.
  std::string MosquittoConfig() const { return ReadFile(mosquitto_conf); }

  // The generated config without the plugin lines and with anonymous clients allowed: plain
  // Mosquitto checking the certificate chain only (a baseline for benches and interop).
  std::string ListenerOnlyConfig() const {
    std::string out;
    std::string text = ReadFile(mosquitto_conf);
    size_t pos = 0;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string line = text.substr(pos, end - pos);
      pos = end + 1;
      if (line.rfind("plugin", 0) == 0 || line.rfind("allow_anonymous", 0) == 0) continue;
      out += line + "\n";
    }
    return out + "allow_anonymous true\n";
  }
};

}  // namespace edgetrust::testing
