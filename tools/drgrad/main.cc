// Entry point of the drgrad command-line program.
#include <iostream>

int main() {
  std::cout << "drgrad\n";
  return 0;
}
