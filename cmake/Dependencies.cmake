# Third-party libraries, all from Debian packages (tools/dev.sh installs them). Nothing is
# downloaded at build time.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
find_package(ZLIB REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(CLI11 REQUIRED)
if(DRGRAD_BUILD_TESTS)
  find_package(Catch2 2 REQUIRED)
  include(Catch)
endif()
