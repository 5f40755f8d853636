# Every external dependency, found once, as an imported target. All are Debian 12 packages
# (see scripts/install-deps).
find_package(PkgConfig REQUIRED)
pkg_check_modules(WOLFSSL REQUIRED IMPORTED_TARGET wolfssl)
pkg_check_modules(LIBUV REQUIRED IMPORTED_TARGET libuv)
pkg_check_modules(LMDB REQUIRED IMPORTED_TARGET lmdb)
pkg_check_modules(MOSQUITTO REQUIRED IMPORTED_TARGET libmosquitto)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(Threads REQUIRED)

# msgpack-c is header-only; its CMake package drags in Boost, which we do not use.
add_library(et_msgpack INTERFACE)
target_compile_definitions(et_msgpack INTERFACE MSGPACK_NO_BOOST MSGPACK_DEFAULT_API_VERSION=3)

# The broker's plugin headers (mosquitto-dev) live in /usr/include; check they are there.
find_path(MOSQUITTO_BROKER_INCLUDE_DIR mosquitto_broker.h REQUIRED)
find_program(MOSQUITTO_EXECUTABLE mosquitto PATHS /usr/sbin /usr/local/sbin REQUIRED)

if(EDGETRUST_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
