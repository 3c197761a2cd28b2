// parse_device: the accepted spellings, and a clear std::invalid_argument for everything else
// (including indices too long for an int, which once escaped as std::out_of_range from stoi).
#include <catch2/catch.hpp>

#include <stdexcept>

#include "kernels/core/device.h"

using drgrad::kernels::Device;
using drgrad::kernels::parse_device;

TEST_CASE("parse_device reads cpu, cuda and cuda:N", "[device]") {
  CHECK(parse_device("cpu") == Device::cpu());
  CHECK(parse_device("cuda") == Device::cuda(0));
  CHECK(parse_device("cuda:3") == Device::cuda(3));
  CHECK(parse_device("cuda:123456789") == Device::cuda(123456789));
}

TEST_CASE("parse_device refuses other text with invalid_argument", "[device]") {
  for (const char* text : {"gpu", "cuda:", "cuda:-1", "cuda:1x", "CUDA", "cuda:99999999999"}) {
    INFO(text);
    CHECK_THROWS_AS(parse_device(text), std::invalid_argument);
  }
}
