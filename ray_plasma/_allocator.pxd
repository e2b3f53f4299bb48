# distutils: language = c++
from libc.stdint cimport int64_t, uint64_t
from libcpp cimport bool as cbool
from libcpp.map cimport map as cmap
from libcpp.pair cimport pair
from libcpp.set cimport set as cset


cdef struct Block:
    uint64_t size
    cbool free


cdef class Allocator:
    # offset -> block, covering [0, capacity) without gaps: neighbours are one step away.
    cdef cmap[uint64_t, Block] _blocks
    # (size, offset) of every free block: best fit is one lower_bound.
    cdef cset[pair[uint64_t, uint64_t]] _free
    cdef readonly uint64_t capacity
    cdef readonly uint64_t alignment
    cdef readonly uint64_t used
    cdef readonly uint64_t num_allocated

    cpdef int64_t allocate(self, uint64_t size)
    cpdef uint64_t free(self, uint64_t offset) except 0
    cpdef uint64_t block_size(self, uint64_t offset) except 0
    cpdef uint64_t largest_free(self)
