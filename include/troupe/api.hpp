#pragma once
// The actor-level API for custom pipelines: everything a program needs (docs/actor-api.md).
#include "troupe/pipeline.hpp"
#include "troupe/replicas.hpp"
#include "troupe/stage.hpp"
#include "troupe/tensor.hpp"
