# cython: language_level=3
"""The copy loop behind ray_plasma.memcopy: streaming (non-temporal) stores.

A large object written into plasma is read next by another process, much later, so
pulling its destination lines into this core's cache (what memcpy's ordinary stores do,
reading each line before writing it) only costs bandwidth. On the 2-core dev machine an
80 MB copy ran at 12-14 GB/s through glibc memcpy and 20-26 GB/s with these stores
(47-51 GB/s from a zero-page source); benchmarks/README.md has the figures. SSE2 is part
of every x86-64 CPU; elsewhere this falls back to memcpy.
"""
from libc.stddef cimport size_t

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #if defined(__SSE2__)
    #include <emmintrin.h>
    static void ray_stream_copy(char *dst, const char *src, size_t n) {
        size_t head = (16 - ((uintptr_t)dst & 15)) & 15;
        if (head > n) head = n;
        memcpy(dst, src, head);
        size_t i = head;
        for (; i + 64 <= n; i += 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(src + i + 32));
            __m128i d = _mm_loadu_si128((const __m128i *)(src + i + 48));
            _mm_stream_si128((__m128i *)(dst + i), a);
            _mm_stream_si128((__m128i *)(dst + i + 16), b);
            _mm_stream_si128((__m128i *)(dst + i + 32), c);
            _mm_stream_si128((__m128i *)(dst + i + 48), d);
        }
        _mm_sfence();
        memcpy(dst + i, src + i, n - i);
    }
    #else
    static void ray_stream_copy(char *dst, const char *src, size_t n) {
        memcpy(dst, src, n);
    }
    #endif
    """
    void ray_stream_copy(char *dst, const char *src, size_t n) nogil


def stream_copy(unsigned char[::1] dest not None, const unsigned char[::1] src not None):
    """Copy src into dest (same length) without the GIL, bypassing the cache."""
    cdef size_t n = src.shape[0]
    if <size_t>dest.shape[0] != n:
        raise ValueError(f"stream_copy: destination holds {dest.shape[0]} bytes, "
                         f"source {n}")
    if n == 0:
        return
    with nogil:
        ray_stream_copy(<char *>&dest[0], <const char *>&src[0], n)
