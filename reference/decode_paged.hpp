// A paged KV cache, as vLLM and FlashInfer keep it, for the float64 decode truth (SEMANTICS.md
// §9): the caches of a decode batch live in a pool of fixed-size pages, and each request's block
// table lists, in order, the pages that hold its tokens. Token j of request r is row
// j % page_size of page block_tables[r][j / page_size]. The layout is storage only: decode from a
// paged cache gathers each request's tokens back into the packed [total_k, Hkv, D] layout and
// runs decode_forward, so it is the same truth bitwise, whatever the page size or page order.
#pragma once

#include <vector>

#include "reference/decode.hpp"

namespace moba::ref {

struct PagedKvCache {
    int page_size = 0;                           // tokens per page, >= 1
    int pages = 0;                               // pages in the pool
    std::vector<float> k_pages, v_pages;         // [pages, page_size, Hkv, D]
    std::vector<std::vector<int>> block_tables;  // per request: page ids, in token order

    // Throws std::invalid_argument naming the value when the page size or the pool's sizes are
    // bad, a request has no table or too few pages for its cache length, or a page id that
    // holds its tokens is outside [0, pages). Entries past a request's last token are not read
    // (tables may be preallocated) and pages may be shared by requests (prefix sharing).
    void validate(const DecodeBatch& batch) const;
};

// The paged copy of packed caches k, v [total_k, Hkv, D]: request r's j-th page is page
// page_order[p] where p counts the pages of the requests before it plus j; unused pool rows are
// NaN (so a gather that reads one is seen). page_order must be a permutation of
// [0, pages needed); throws std::invalid_argument otherwise.
PagedKvCache page_caches(const DecodeBatch& batch, const std::vector<float>& k,
                         const std::vector<float>& v, int page_size,
                         const std::vector<int>& page_order);

// The packed caches [total_k, Hkv, D] read from the pages (validate first).
struct PackedKv {
    std::vector<float> k, v;
};
PackedKv gather_caches(const DecodeBatch& batch, const PagedKvCache& cache);

// decode_forward on the paged caches: bitwise decode_forward on the gathered ones.
DecodeResult decode_forward_paged(const DecodeBatch& batch, const std::vector<float>& q_new,
                                  const PagedKvCache& cache);

}  // namespace moba::ref
