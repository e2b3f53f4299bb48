# cython: language_level=3
"""A buffer exporter over a plasma view that tells its owner when the last view dies.

deserialize() hands numpy/Arrow zero-copy slices of a plasma object; the object's plasma
reference must stay held exactly as long as any of those slices lives. Python 3.11 has
no `__buffer__` hook, so this small exporter holds the PlasmaObject's view and, when
the last memoryview or array over it is collected, queues its object id on `released`
(a deque: __dealloc__ may run inside the garbage collector on a thread that holds the
plasma client's lock, so the actual release happens later, outside it).
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE


cdef class SharedBuffer:
    cdef object _view
    cdef object _object_id
    cdef object _released
    cdef Py_buffer _inner
    cdef bint _has_inner

    def __cinit__(self, view, object_id, released):
        self._view = view
        self._object_id = object_id
        self._released = released
        PyObject_GetBuffer(view, &self._inner, PyBUF_SIMPLE)
        self._has_inner = True

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        buffer.buf = self._inner.buf
        buffer.len = self._inner.len
        buffer.itemsize = 1
        buffer.readonly = 1
        buffer.ndim = 1
        buffer.format = "B"
        buffer.shape = NULL
        buffer.strides = NULL
        buffer.suboffsets = NULL
        buffer.internal = NULL
        buffer.obj = self

    def __releasebuffer__(self, Py_buffer *buffer):
        pass

    def __len__(self):
        return self._inner.len

    def __dealloc__(self):
        if self._has_inner:
            PyBuffer_Release(&self._inner)
            self._has_inner = False
        if self._released is not None:
            try:
                self._released.append(self._object_id)
            except Exception:
                pass
