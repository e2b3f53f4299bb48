"""What a raylet tells the state API about its node that lives only on the node: its log
files (ListLogs, GetLog: `ray_core logs`, also on another machine), the Python stacks
of its workers and drivers (DumpStacks: `ray_core stack`) and what it does with an
object (ExplainNodeObject: `ray_core explain`).

Log files are named, never pathed: a request names a file of the session's logs folder
(no directory part), so no caller reads outside it. Stacks come from `py-spy dump`, run
on demand against the live process (no restart, nothing installed in the worker); a
process it cannot read (exited, no ptrace permission) gets its error instead of a stack.
"""
import asyncio
import fnmatch
import os
import shutil
import sys
from typing import List, Tuple

from ray_common.config import config
from ray_common.protocol import node_manager_pb2 as NM


class LogFiles:
    def __init__(self, logs_dir: str):
        self.logs_dir = logs_dir

    def list(self, glob_filter: str) -> List[Tuple[str, int]]:
        out = []
        try:
            names = sorted(os.listdir(self.logs_dir))
        except FileNotFoundError:
            return out
        for name in names:
            if name.startswith(".") or glob_filter and not fnmatch.fnmatch(name, glob_filter):
                continue        # dot files are the processes' locks, not logs
            try:
                out.append((name, os.path.getsize(os.path.join(self.logs_dir, name))))
            except OSError:
                continue        # removed meanwhile (rotated or swept)
        return out

    def path(self, filename: str) -> str:
        if not filename or os.path.basename(filename) != filename or filename in (".", ".."):
            raise ValueError(f"{filename!r} is not a file name of the logs folder (no "
                             f"directory part allowed)")
        path = os.path.join(self.logs_dir, filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no log file {filename!r} in {self.logs_dir}")
        return path

    def read(self, filename: str, offset: int, tail_lines: int) -> NM.GetLogReply:
        limit = config.log_read_max_bytes
        with open(self.path(filename), "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if tail_lines > 0:
                start = max(0, size - limit)
                f.seek(start)
                data = f.read(size - start)
                lines = data.splitlines(keepends=True)
                data = b"".join(lines[-tail_lines:])
                return NM.GetLogReply(data=data, end_offset=size)
            start = min(max(offset, 0), size)
            f.seek(start)
            data = f.read(min(limit, size - start))
            return NM.GetLogReply(data=data, end_offset=start + len(data))


async def dump_stack(pid: int) -> Tuple[str, str]:
    """(stack text, error) of one live Python process, by py-spy."""
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(py_spy):
        return "", "py-spy is not installed on this node (pip install py-spy)"
    try:
        proc = await asyncio.create_subprocess_exec(
            py_spy, "dump", "--pid", str(pid), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
    except OSError as e:
        return "", f"could not run py-spy: {e}"
    try:
        out, err = await asyncio.wait_for(proc.communicate(), config.stack_dump_timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return "", f"py-spy did not answer within {config.stack_dump_timeout_s:g} s"
    if proc.returncode != 0:
        return "", (err.decode(errors="replace").strip() or
                    f"py-spy exited with {proc.returncode}")
    return out.decode(errors="replace"), ""


def explain_object(node_manager, object_id: bytes) -> str:
    """What this node does with an object now, in words; "" when it has nothing of it."""
    node = node_manager.node_id.hex()[:12]
    spilled = node_manager.spills.spilled.get(object_id)
    if spilled is not None:
        return (f"spilled to disk on node {node} ({spilled.data_size} bytes in "
                f"{spilled.path}): restored into the object store when it is read")
    if node_manager.objects.is_pulling(object_id):
        return f"being transferred to node {node} (a pull is in progress)"
    if node_manager.plasma.contains(object_id):
        return f"in the object store of node {node}"
    return ""
