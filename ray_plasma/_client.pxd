from libc.stdint cimport int64_t, uint16_t, uint64_t


cdef class PlasmaObject:
    cdef readonly bytes object_id
    cdef readonly object data
    cdef readonly bytes metadata


cdef class PlasmaClient:
    cdef object _sock
    cdef int _fd
    cdef object _lock
    cdef object _region
    cdef object _view
    cdef readonly str socket_path
    cdef readonly uint64_t capacity
    cdef readonly uint64_t region_address
    cdef dict _held
    cdef uint64_t _inline_limit

    cdef bytes _request(self, uint16_t op, bytes body, bint reply)
    cdef bytes _request_locked(self, uint16_t op, bytes body, bint reply)
    cdef list _get_locked(self, list ids, bytes body)
    cdef int _transfer(self, bint sending, char *buf, size_t n, str what) except -1
    cdef object _disconnected(self, str why)
