cdef class BaseID:
    cdef readonly bytes _data
