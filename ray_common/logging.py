"""glog-style log lines, one file per process, so one grep follows a task everywhere.

Line format, as Ray's C++ components write it:
    I1126 08:07:12.942349 4076 task_manager.py:63] Completing task <task_id>
(level letter, month and day, time with microseconds, pid, file:line). Only the
project's own loggers (`ray_common`, `ray_gcs`, `ray_plasma`, `ray_raylet`, `ray_core`)
are configured, so a driver's own `logging` setup is left alone.
"""
import logging
import logging.handlers
import os
import sys
import time

from ray_common.config import config

PROJECT_LOGGERS = ("ray_common", "ray_gcs", "ray_plasma", "ray_raylet", "ray_core")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}
_LETTERS = {logging.DEBUG: "D", logging.INFO: "I", logging.WARNING: "W",
            logging.ERROR: "E", logging.CRITICAL: "F"}


class GlogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = time.localtime(record.created)
        micros = int((record.created % 1) * 1_000_000)
        letter = _LETTERS.get(record.levelno, "I")
        line = (f"{letter}{t.tm_mon:02d}{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:"
                f"{t.tm_sec:02d}.{micros:06d} {record.process} {record.filename}:"
                f"{record.lineno}] {record.getMessage()}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def log_level() -> int:
    name = str(config.log_level).lower()
    if name not in _LEVELS:
        raise ValueError(f"RAY_CORE_LOG_LEVEL must be one of {', '.join(_LEVELS)}, got {name!r}")
    return _LEVELS[name]


def setup_process_logging(component: str, logs_dir: str) -> str:
    """Send this process's project logs to `<logs_dir>/<component>.log`; errors also to stderr.

    Returns the log file's path. Calling it again (a driver re-initialising) replaces
    the handlers rather than stacking them.
    """
    os.makedirs(logs_dir, exist_ok=True)
    path = os.path.join(logs_dir, f"{component}.log")
    formatter = GlogFormatter()
    file_handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=config.log_rotation_max_bytes,
        backupCount=config.log_rotation_backup_count)
    file_handler.setFormatter(formatter)
    stderr_handler = logging.StreamHandler(sys.stderr)
    stderr_handler.setLevel(logging.ERROR)
    stderr_handler.setFormatter(formatter)
    level = log_level()
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()
        logger.addHandler(file_handler)
        logger.addHandler(stderr_handler)
        logger.setLevel(level)
        logger.propagate = False
    return path


def close_process_logging() -> None:
    """Detach and close the handlers (a driver's shutdown)."""
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()
