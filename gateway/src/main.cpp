// edgetrust-gateway: see GatewayUsage() and gateway.h.
#include <malloc.h>
#include <signal.h>
#include <uv.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "edgetrust/gateway/gateway.h"
#include "edgetrust/gateway/options.h"
#include "edgetrust/mqtt/uv_mqtt_client.h"

int main(int argc, char** argv) {
  using namespace edgetrust::gateway;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::fputs(GatewayUsage().c_str(), stdout);
      return 0;
    }
  }
  auto options = ParseGatewayOptions(args);
  if (!options.ok()) {
    std::fprintf(stderr, "edgetrust-gateway: %s\n\n%s", options.error().message.c_str(),
                 GatewayUsage().c_str());
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);  // a broker that goes away must not kill us mid-write
  // Per-device upstreams (Azure IoT Hub, AWS identity device) hold a connection per active
  // device: take all the descriptors the hard limit allows.
  edgetrust::mqtt::RaiseDescriptorLimit(UINT64_MAX);
  // glibc hands the free top of a heap back to the kernel once it passes 128 KiB. Each CSR
  // check allocates and frees about 1.6 MiB of wolfCrypt point tables on the checking thread
  // (see CheckCsrs in gateway.cpp), so at that threshold every check grew and shrank the heap:
  // page faults and sysmalloc were 75 % of the gateway's CPU in an enrollment storm. Keep up to
  // 4 MiB; the idle housekeeping's malloc_trim still returns it all.
  mallopt(M_TRIM_THRESHOLD, 4 << 20);
  // Setting a threshold also turns off glibc's dynamic mmap threshold (which rises to the
  // largest block freed), so every block of 128 KiB or more came from its own mmap: a commit's
  // batch of submissions (136 and 268 KiB as it grows) cost page faults on every fill and, freed
  // with the commit thread running, a munmap whose TLB shootdown interrupts the other CPU.
  // Blocks up to 4 MiB come from the heap, as the dynamic threshold would have had it.
  mallopt(M_MMAP_THRESHOLD, 4 << 20);

  uv_loop_t loop;
  uv_loop_init(&loop);
  int exit_code = 0;
  {
    auto gateway = Gateway::Create(&loop, std::move(options).value());
    if (!gateway.ok()) {
      std::fprintf(stderr, "edgetrust-gateway: %s\n", gateway.error().ToString().c_str());
      uv_loop_close(&loop);
      return 1;
    }
    auto started = (*gateway)->Start();
    if (!started.ok()) {
      std::fprintf(stderr, "edgetrust-gateway: %s\n", started.error().ToString().c_str());
      (*gateway)->Shutdown();
      exit_code = 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // close callbacks of anything the destructors closed
  if (uv_loop_close(&loop) != 0) {
    std::fprintf(stderr, "edgetrust-gateway: a libuv handle was left open at exit\n");
    return 1;
  }
  return exit_code;
}
