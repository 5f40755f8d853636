# Small helpers so every target gets the same standard, warnings and test settings.

set(ET_WARNINGS -Wall -Wextra -Werror -Wno-missing-field-initializers)

# et_library(NAME SOURCES src... DEPS targets...)
# A static library with include/ as its public face and src/ private.
function(et_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                                     PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_compile_options(${name} PRIVATE ${ET_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

# et_program(NAME SOURCES src... DEPS targets...)
function(et_program name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${ET_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
endfunction()

# et_test(NAME SOURCES src... DEPS targets... [LABELS l...] [TIMEOUT s] [RESOURCE_LOCK r])
# A GoogleTest binary registered with CTest as one test (one process per binary keeps
# broker start-ups per suite, not per case). Test binaries find tools through ET_BIN_DIR.
function(et_test name)
  if(NOT EDGETRUST_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS;RESOURCE_LOCK" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${ET_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_definitions(${name} PRIVATE
    ET_BIN_DIR="${CMAKE_BINARY_DIR}/bin"
    ET_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_test(NAME ${name} COMMAND ${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT})
  if(ARG_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
  if(ARG_RESOURCE_LOCK)
    set_tests_properties(${name} PROPERTIES RESOURCE_LOCK "${ARG_RESOURCE_LOCK}")
  endif()
endfunction()

# Every program and the plugin land in build/bin so tests and the demo find them in one place.
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
set(CMAKE_LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)

# et_fuzz(NAME SOURCE file LIB library [INCLUDES dir...] [SANITIZERS list])
# A libFuzzer target for LIB (only with -DEDGETRUST_FUZZ=ON, clang). LIB is compiled with
# coverage (fuzzer-no-link) so the fuzzer sees inside the parsers it calls. Sanitizer reports do
# not recover: with -DEDGETRUST_SANITIZE=ON (UBSan everywhere) undefined behaviour is a crash the
# fuzzer stops at and saves, not a line lost in its output.
function(et_fuzz name)
  if(NOT EDGETRUST_FUZZ)
    return()
  endif()
  cmake_parse_arguments(ARG "" "SOURCE;LIB;SANITIZERS" "INCLUDES" ${ARGN})
  if(NOT ARG_SANITIZERS)
    set(ARG_SANITIZERS address)
  endif()
  target_compile_options(${ARG_LIB} PRIVATE -fsanitize=fuzzer-no-link,address
                                            -fno-sanitize-recover=all)
  add_executable(${name} ${ARG_SOURCE})
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer,${ARG_SANITIZERS}
                                         -fno-sanitize-recover=all)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer,${ARG_SANITIZERS})
  target_link_libraries(${name} PRIVATE ${ARG_LIB})
  if(ARG_INCLUDES)
    target_include_directories(${name} PRIVATE ${ARG_INCLUDES})
  endif()
endfunction()
