#pragma once
// A Collective whose ranks are threads of one process holding host (CPU backend) tensors. The
// sum is split by slices: each rank adds up its slice of every rank's buffer, then writes it back
// into all of them (three barriers per all-reduce). all_to_all: each rank registers its rows and
// counts, checks the whole count matrix, copies its blocks from every rank (two barriers).
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/collective.hpp"

namespace troupe {

class ThreadCollectiveGroup;

// Makes the `size` ranks of one group; give rank r's Collective to the thread that runs rank r.
std::vector<std::unique_ptr<Collective>> make_thread_collectives(
    int64_t size, std::chrono::milliseconds timeout = std::chrono::milliseconds(120000));

}  // namespace troupe
