"""Wire format between plasma clients and the store (one Unix stream socket per client).

Every message is a frame: an 8-byte header `<I H H>` = (body length, op, status) and then
the body. Requests carry status 0; the store answers each request, in order, with one
frame of the same op whose status is STATUS_OK or an error code with a UTF-8 message as
the body. RELEASE is the only request without a reply (it cannot fail in a way the client
does not already know, and it is on the hot path). All integers are little-endian; an
object id is ObjectID.SIZE (28) raw bytes; several ids in one body are concatenated.

Bodies (requests -> OK replies):
  HELLO            u32 version          -> u64 capacity (+ the region's memfd, SCM_RIGHTS)
  CREATE           id u64 data u64 meta -> u64 offset (data at offset, metadata right after)
  CREATE_AND_SEAL  id u64 data u64 meta data meta -> empty
  SEAL / ABORT     ids                  -> empty
  GET              i64 timeout_ms ids   -> GET_ENTRY per id (found=0: not sealed in time)
  RELEASE          ids                  (no reply)
  CONTAINS         id                   -> u8
  DELETE           ids                  -> u32 deleted now (others wait for their readers)
  LIST             empty                -> LIST_ENTRY per object
  STATS            empty                -> JSON object
  SUBSCRIBE        empty                -> empty; afterwards the store only sends EVENT
                                           frames on this connection: EVENT_ENTRY bodies
A connection starts with HELLO (or SUBSCRIBE, which needs no region). Requests on one
connection are answered in order: a GET that waits holds back the requests queued behind
it. A frame the store cannot parse (unknown op, bad length, a body that does not fit the
op) closes that client's connection; the store logs it and goes on.
"""
import collections
import struct

PROTOCOL_VERSION = 1
OBJECT_ID_SIZE = 28

HEADER = struct.Struct("<IHH")
HEADER_SIZE = HEADER.size

OP_HELLO = 1
OP_CREATE = 2
OP_CREATE_AND_SEAL = 3
OP_SEAL = 4
OP_ABORT = 5
OP_GET = 6
OP_RELEASE = 7
OP_CONTAINS = 8
OP_DELETE = 9
OP_LIST = 10
OP_STATS = 11
OP_SUBSCRIBE = 12
OP_EVENT = 13

STATUS_OK = 0
STATUS_OBJECT_EXISTS = 1
STATUS_NOT_FOUND = 2
STATUS_STORE_FULL = 3
STATUS_INVALID = 4
STATUS_ERROR = 5              # any other PlasmaError (e.g. seal of a sealed object)

HELLO = struct.Struct("<I")
HELLO_REPLY = struct.Struct("<Q")
CREATE = struct.Struct(f"<{OBJECT_ID_SIZE}sQQ")
CREATE_REPLY = struct.Struct("<Q")
GET = struct.Struct("<q")
GET_ENTRY = struct.Struct("<B7xQQQ")           # found, offset, data size, metadata size
LIST_ENTRY = struct.Struct(f"<{OBJECT_ID_SIZE}sQQBxxxI")  # id, data, meta, state, refs
EVENT_ENTRY = struct.Struct(f"<{OBJECT_ID_SIZE}sBxxxQQ")  # id, event, data, meta
COUNT = struct.Struct("<I")

STATE_CREATED = 1
STATE_SEALED = 2
STATE_NAMES = {STATE_CREATED: "created", STATE_SEALED: "sealed"}

ObjectInfo = collections.namedtuple(
    "ObjectInfo", ["object_id", "data_size", "metadata_size", "state", "ref_count"])

EVENT_SEALED = 1
EVENT_DELETED = 2
EVENT_NAMES = {EVENT_SEALED: "sealed", EVENT_DELETED: "deleted"}


def split_ids(body: bytes, start: int = 0):
    """The ids concatenated in body[start:]; ValueError unless they fill it exactly."""
    size = len(body) - start
    if size == OBJECT_ID_SIZE:
        return [bytes(body[start:])]
    if size <= 0 or size % OBJECT_ID_SIZE:
        raise ValueError(f"expected a non-empty list of {OBJECT_ID_SIZE}-byte ids, "
                         f"got {size} bytes")
    return [bytes(body[i:i + OBJECT_ID_SIZE]) for i in range(start, len(body), OBJECT_ID_SIZE)]
