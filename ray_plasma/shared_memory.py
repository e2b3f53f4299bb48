"""The store's one shared-memory region: an anonymous memfd, never a named file.

The store creates the memfd and hands its descriptor to each client over the Unix
socket (SCM_RIGHTS), so the region has no name anywhere: when the last process holding
the descriptor or a mapping exits, killed or not, the kernel frees it and nothing is
left in /dev/shm.
"""
import logging
import mmap
import os

logger = logging.getLogger(__name__)

HUGE_PAGE_SIZE = 2 * 1024 ** 2
# madvise(MADV_POPULATE_WRITE) (Linux 5.14): fault a range in with one call instead of
# one trap per 4 KiB page, the difference between ~0.5x and ~0.9x of memcpy for the
# first write into fresh pages.
MADV_POPULATE_WRITE = 23


def create_region(capacity: int, hugepages: bool = False, preallocate: bool = False):
    """(fd, capacity) of a new memfd of `capacity` bytes (rounded up to the page size).

    With `hugepages`, 2 MiB pages are asked for (MFD_HUGETLB); when the kernel has none
    reserved the store logs why and uses normal pages. With `preallocate` every page is
    allocated now, so no later write pays for it.
    """
    fd = -1
    if hugepages:
        size = -(-capacity // HUGE_PAGE_SIZE) * HUGE_PAGE_SIZE
        try:
            fd = os.memfd_create("ray_plasma", os.MFD_CLOEXEC | os.MFD_HUGETLB)
            os.ftruncate(fd, size)
            capacity = size
        except OSError as e:
            if fd >= 0:
                os.close(fd)
                fd = -1
            logger.warning("Huge pages unavailable (%s; see /proc/sys/vm/nr_hugepages); "
                           "using normal pages", e)
    if fd < 0:
        size = -(-capacity // mmap.PAGESIZE) * mmap.PAGESIZE
        fd = os.memfd_create("ray_plasma", os.MFD_CLOEXEC)
        os.ftruncate(fd, size)
        capacity = size
    if preallocate:
        os.posix_fallocate(fd, 0, capacity)
    return fd, capacity


def map_region(fd: int, capacity: int) -> mmap.mmap:
    """A shared read-write mapping of the whole region."""
    return mmap.mmap(fd, capacity, flags=mmap.MAP_SHARED,
                     prot=mmap.PROT_READ | mmap.PROT_WRITE)


def prefault(region: mmap.mmap, offset: int, size: int) -> None:
    """Fault in [offset, offset + size) for writing in one system call (best effort)."""
    start = offset // mmap.PAGESIZE * mmap.PAGESIZE
    try:
        region.madvise(MADV_POPULATE_WRITE, start, offset + size - start)
    except (OSError, ValueError):
        pass  # older kernels: the writes fault the pages in one by one instead
