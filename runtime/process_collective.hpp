#pragma once
// A Collective whose ranks are processes of one host holding host (CPU backend) tensors, joined
// by Unix stream sockets in a star: rank 0 holds one socket per other rank, each other rank one
// socket to rank 0. The sockets are made before the ranks fork (make_socket_star); each process
// then takes its ends (make_process_collective).
//
// Wire, per call: every rank > 0 sends {op, bytes} and its buffer to rank 0; rank 0 checks that
// every rank called the same op with the same size, then
//   all_reduce_sum: adds the buffers in rank order starting from zero (ThreadCollective's order,
//                   so both give bit-identical sums) and sends the sum back;
//   all_gather:     sends every rank's block back, rank-major; each rank places them in columns.
//   all_to_all:     every rank sends its row width, both count vectors and its rows; rank 0
//                   checks the whole count matrix, then sends each rank its rows from every rank
//                   (all_to_all_counts: the count matrix gathered and sent back whole).
// Failure model: every read and write waits at most `timeout` (timeout; the group then aborts);
// a peer gone reads as EOF / EPIPE (unavailable; the group aborts); a mismatched call aborts the
// group (invalid_argument). abort() shuts the sockets down, which wakes a rank blocked in poll,
// and rank 0's abort reaches the others as EOF. Sends never raise SIGPIPE (MSG_NOSIGNAL).
// Not thread-safe but for abort(): one thread of each process calls.
#include <chrono>
#include <memory>
#include <vector>

#include "runtime/collective.hpp"

namespace troupe {

// The socket pairs of a `size`-rank star: pair r (r >= 1) joins rank 0 (hub[r]) and rank r (leaf[r]).
struct SocketStar {
  int64_t size = 0;
  std::vector<int> hub;   // [size], hub[0] unused (-1)
  std::vector<int> leaf;  // [size], leaf[0] unused (-1)
};
Result<SocketStar> make_socket_star(int64_t size);

// Rank `rank`'s Collective over its ends of `star`; closes the ends other ranks own (call it once
// in each process after fork).
std::unique_ptr<Collective> make_process_collective(const SocketStar& star, int64_t rank,
                                                    std::chrono::milliseconds timeout = std::chrono::milliseconds(120000));

}  // namespace troupe
