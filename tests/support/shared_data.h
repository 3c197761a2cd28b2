// Tests that read ../shared/data (real TensorFlow-written files, Census samples) skip visibly on
// a checkout without that folder: a user must be able to run the suite without it.
#pragma once

#include <filesystem>
#include <iostream>

#define DRGRAD_REQUIRE_SHARED_DATA()                                                             \
  do {                                                                                           \
    if (!std::filesystem::is_directory(DRGRAD_SHARED_DATA_DIR)) {                                \
      std::cout << "SKIPPED: " << DRGRAD_SHARED_DATA_DIR                                         \
                << " is not present (it sits beside the repository in CI and for developers)\n"; \
      return;                                                                                    \
    }                                                                                            \
  } while (0)
