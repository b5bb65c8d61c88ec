// FractalDB's published category search replayed: one numpy legacy stream (np.random.seed(seed) once) from which
// every candidate draws, in this order and whether it is accepted or not,
//   N = randint(min_maps, max_maps + 1); per map uniform(-r, r, 6) (a..f); p = |ad - bc| / sum;
//   then random(n_points) for its chain (the chain uses the first n_points - 1).
// The draws are cheap and strictly sequential; the chains are not, so each candidate keeps a copy of the stream at
// its chain's start and the fill-rate renders run in parallel (PublishedStream::examine).
#pragma once
#include <cstdint>

#include "core/ifs.hpp"
#include "core/rng.hpp"

namespace fdsl {

// numpy's legacy RandomState.randint(low, high) for high - low <= 2^32: 32-bit draws masked to the next power of
// two above high - low - 1, rejected until one is in range.
int64_t legacy_randint(Mt19937& rng, int64_t low, int64_t high);

struct CandidateDraw {
    int min_maps = 2, max_maps = 7;  // randint(min_maps, max_maps + 1)
    double param_range = 1.0;        // a..f ~ uniform(-param_range, param_range)
    int64_t n_points = 100000;       // random(n_points) drawn for each chain
};

class PublishedStream {
  public:
    PublishedStream(uint32_t seed, const CandidateDraw& draw) : rng_(seed), draw_(draw) {}
    // Draws the next candidate into `system` and copies the stream at its chain's start into `chain` (may be null:
    // the candidate is skipped); moves the stream past the chain's draws.
    void next(IfsSystem* system, Mt19937* chain);
    // Candidates drawn so far.
    int64_t consumed() const { return consumed_; }

  private:
    Mt19937 rng_;
    CandidateDraw draw_;
    int64_t consumed_ = 0;
};

}  // namespace fdsl
