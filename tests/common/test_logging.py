import os
import re
import subprocess
import sys
import textwrap

GLOG_LINE = re.compile(r"^[DIWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d{6} (\d+) ([\w.<>]+):(\d+)\] (.*)$")

CHILD = textwrap.dedent("""
    import logging, sys
    from ray_common.logging import setup_process_logging
    path = setup_process_logging("component_x", sys.argv[1])
    log = logging.getLogger("ray_gcs.something")
    log.debug("hidden at info")
    log.info("Completing task %s", "abc123")
    log.error("broken %d", 7)
    print(path)
""")


def run_child(logs_dir, level=None):
    env = dict(os.environ)
    if level:
        env["RAY_CORE_LOG_LEVEL"] = level
    return subprocess.run([sys.executable, "-c", CHILD, str(logs_dir)], env=env,
                          capture_output=True, text=True, check=True)


def test_log_file_lines_are_glog_format(tmp_path):
    result = run_child(tmp_path)
    path = result.stdout.strip()
    assert path == str(tmp_path / "component_x.log")
    lines = open(path).read().splitlines()
    assert len(lines) == 2
    for line in lines:
        match = GLOG_LINE.match(line)
        assert match, line
        assert match.group(2) == "<string>"
    pid = GLOG_LINE.match(lines[0]).group(1)
    assert lines[0].startswith("I") and lines[0].endswith("Completing task abc123")
    assert lines[1].startswith("E") and lines[1].endswith("broken 7")
    # Errors also reach stderr, in the same format, with the same pid.
    err = [line for line in result.stderr.splitlines() if line]
    assert len(err) == 1 and GLOG_LINE.match(err[0]).group(1) == pid


def test_level_from_environment(tmp_path):
    path = run_child(tmp_path, level="debug").stdout.strip()
    text = open(path).read()
    assert re.search(r"^D\d{4} .*hidden at info$", text, re.M)
    path = run_child(tmp_path / "quiet", level="error").stdout.strip()
    assert open(path).read().splitlines()[0].endswith("broken 7")
    assert len(open(path).read().splitlines()) == 1
