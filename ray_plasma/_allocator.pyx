# distutils: language = c++
"""Best-fit allocator over the offsets of the store's shared region.

Every block, free or used, sits in an ordered map keyed by offset, so that freeing a
block finds both neighbours in O(log n) and merges with whichever is free: two free
blocks are never adjacent. Free blocks are also kept in a set ordered by (size, offset);
the smallest block that fits is one lower_bound away, and the lowest offset wins ties,
which keeps allocations packed towards the start of the region. Sizes are rounded up to
the alignment (64 bytes: a cache line, and what numpy/Arrow want for SIMD), and the
region itself is page aligned, so every object's address is 64-byte aligned.

The allocator only hands out offsets; it never touches the shared memory itself.
"""
from cython.operator cimport dereference as deref, preincrement as inc, predecrement as dec
from libcpp.pair cimport pair

DEFAULT_ALIGNMENT = 64


cdef inline uint64_t _round_up(uint64_t size, uint64_t alignment):
    if size == 0:
        size = 1
    return (size + alignment - 1) // alignment * alignment


cdef class Allocator:
    def __cinit__(self, uint64_t capacity, uint64_t alignment=DEFAULT_ALIGNMENT):
        if alignment == 0 or alignment & (alignment - 1):
            raise ValueError(f"alignment must be a power of two, got {alignment}")
        self.alignment = alignment
        self.capacity = capacity // alignment * alignment
        if self.capacity == 0:
            raise ValueError(f"capacity {capacity} is smaller than one {alignment}-byte block")
        self.used = 0
        self.num_allocated = 0
        cdef Block whole
        whole.size = self.capacity
        whole.free = True
        self._blocks[0] = whole
        self._free.insert(pair[uint64_t, uint64_t](self.capacity, 0))

    cpdef int64_t allocate(self, uint64_t size):
        """Offset of a new block of at least `size` bytes, or -1 when no free block fits."""
        cdef uint64_t need = _round_up(size, self.alignment)
        if need > self.capacity:
            return -1
        it = self._free.lower_bound(pair[uint64_t, uint64_t](need, 0))
        if it == self._free.end():
            return -1
        cdef uint64_t found_size = deref(it).first
        cdef uint64_t offset = deref(it).second
        self._free.erase(it)
        cdef Block rest
        block = self._blocks.find(offset)
        deref(block).second.free = False
        if found_size > need:
            deref(block).second.size = need
            rest.size = found_size - need
            rest.free = True
            self._blocks[offset + need] = rest
            self._free.insert(pair[uint64_t, uint64_t](rest.size, offset + need))
        self.used += need
        self.num_allocated += 1
        return <int64_t>offset

    cpdef uint64_t free(self, uint64_t offset) except 0:
        """Return the block at `offset`, merging it with free neighbours; gives its size."""
        block = self._blocks.find(offset)
        if block == self._blocks.end() or deref(block).second.free:
            raise KeyError(f"offset {offset} is not an allocated block")
        cdef uint64_t size = deref(block).second.size
        cdef uint64_t start = offset
        cdef uint64_t merged = size
        self.used -= size
        self.num_allocated -= 1
        after = block
        inc(after)
        if after != self._blocks.end() and deref(after).second.free:
            merged += deref(after).second.size
            self._free.erase(pair[uint64_t, uint64_t](deref(after).second.size, deref(after).first))
            self._blocks.erase(after)
        if block != self._blocks.begin():
            before = block
            dec(before)
            if deref(before).second.free:
                start = deref(before).first
                self._free.erase(pair[uint64_t, uint64_t](deref(before).second.size, start))
                merged += deref(before).second.size
                self._blocks.erase(block)
                block = before
        deref(block).second.size = merged
        deref(block).second.free = True
        self._free.insert(pair[uint64_t, uint64_t](merged, start))
        return size

    cpdef uint64_t block_size(self, uint64_t offset) except 0:
        """Bytes reserved for the allocated block at `offset` (the request rounded up)."""
        block = self._blocks.find(offset)
        if block == self._blocks.end() or deref(block).second.free:
            raise KeyError(f"offset {offset} is not an allocated block")
        return deref(block).second.size

    cpdef uint64_t largest_free(self):
        if self._free.empty():
            return 0
        return deref(self._free.rbegin()).first

    @property
    def free_bytes(self):
        return self.capacity - self.used

    @property
    def num_free_blocks(self):
        return self._free.size()

    @property
    def fragmentation(self):
        """Share of free memory outside the largest free block (0: one hole, ~1: dust)."""
        cdef uint64_t free_bytes = self.capacity - self.used
        if free_bytes == 0:
            return 0.0
        return 1.0 - <double>self.largest_free() / <double>free_bytes

    def stats(self):
        return {"capacity": self.capacity, "used": self.used, "free": self.capacity - self.used,
                "largest_free": self.largest_free(), "num_allocated": self.num_allocated,
                "num_free_blocks": self._free.size(), "fragmentation": self.fragmentation}

    def blocks(self):
        """[(offset, size, is_free)] in address order: for tests and debugging."""
        out = []
        it = self._blocks.begin()
        while it != self._blocks.end():
            out.append((deref(it).first, deref(it).second.size, bool(deref(it).second.free)))
            inc(it)
        return out

    def check(self):
        """Raise AssertionError unless the block map and the free set agree exactly.

        Blocks must tile [0, capacity) in order, be aligned, never leave two free blocks
        side by side, and the free set must hold exactly the free blocks; the counters
        must match a recount.
        """
        cdef uint64_t expect = 0, used = 0, allocated = 0, free_count = 0
        cdef cbool previous_free = False
        it = self._blocks.begin()
        while it != self._blocks.end():
            offset = deref(it).first
            size = deref(it).second.size
            is_free = deref(it).second.free
            if offset != expect:
                raise AssertionError(f"block at {offset} does not start where the previous "
                                     f"one ends ({expect})")
            if size == 0 or offset % self.alignment or size % self.alignment:
                raise AssertionError(f"block ({offset}, {size}) is empty or misaligned")
            if is_free:
                if previous_free:
                    raise AssertionError(f"free block at {offset} was not merged with the "
                                         f"free block before it")
                if self._free.count(pair[uint64_t, uint64_t](size, offset)) != 1:
                    raise AssertionError(f"free block ({offset}, {size}) missing from the free set")
                free_count += 1
            else:
                used += size
                allocated += 1
            previous_free = is_free
            expect = offset + size
            inc(it)
        if expect != self.capacity:
            raise AssertionError(f"blocks end at {expect}, capacity is {self.capacity}")
        if free_count != self._free.size():
            raise AssertionError(f"free set holds {self._free.size()} entries for "
                                 f"{free_count} free blocks")
        if used != self.used or allocated != self.num_allocated:
            raise AssertionError(f"counters say {self.used} bytes in {self.num_allocated} "
                                 f"blocks, recount says {used} in {allocated}")
