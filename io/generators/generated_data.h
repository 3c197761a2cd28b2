// What every in-memory data generator returns: a schema and one batch holding all its samples.
#pragma once

#include "io/data/batch.h"

namespace drgrad::io {

struct GeneratedData {
  Schema schema;
  Batch batch;  // batch.validate(schema) holds
};

}  // namespace drgrad::io
