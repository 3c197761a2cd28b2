# Compiler warnings for our own targets; drgrad_target_warnings(t) applies them.
function(drgrad_target_warnings target)
  set(cxx_flags -Wall -Wextra -Wpedantic -Wno-unused-parameter)
  if(DRGRAD_WARNINGS_AS_ERRORS)
    list(APPEND cxx_flags -Werror)
  endif()
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${cxx_flags}>)
  if(DRGRAD_WITH_CUDA)
    set(cuda_flags -Xcompiler=-Wall)
    if(DRGRAD_WARNINGS_AS_ERRORS)
      list(APPEND cuda_flags -Werror=all-warnings)
    endif()
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${cuda_flags}>)
  endif()
endfunction()

# drgrad_add_test_dir(name LIBS ... [LABELS ...]): one Catch2 executable from every *_test.cc in
# the current folder, each TEST_CASE registered with CTest. A test that prints
# "SKIPPED:" (GPU tests on a machine without a device) is reported as skipped, not passed.
function(drgrad_add_test_dir name)
  cmake_parse_arguments(arg "" "" "LIBS;LABELS;SOURCES" ${ARGN})
  file(GLOB test_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cc)
  if(NOT test_sources AND NOT arg_SOURCES)
    return()
  endif()
  add_executable(${name} ${test_sources} ${arg_SOURCES})
  target_link_libraries(${name} PRIVATE drgrad_test_main ${arg_LIBS})
  drgrad_target_warnings(${name})
  set(labels ${arg_LABELS})
  if(NOT labels)
    set(labels cpu)
  endif()
  # --warn NoTests: a registered name that matches no test case (a name CMake split at a
  # semicolon, say) fails instead of passing silently.
  # The TIMEOUT property overrides ctest --timeout: GPU tests get 120 s each, so a hung one cannot
  # eat a device check's whole GPU-test step; CPU tests 600 s (the slowest take a few seconds).
  set(timeout 600)
  if("gpu" IN_LIST labels)
    set(timeout 120)
  endif()
  catch_discover_tests(${name} TEST_PREFIX "${name}: " EXTRA_ARGS --warn NoTests
    PROPERTIES LABELS "${labels}" SKIP_REGULAR_EXPRESSION "SKIPPED:" TIMEOUT ${timeout})
endfunction()
