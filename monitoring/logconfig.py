"""Logging pieces that settings.LOGGING names: a rotating file handler that several
processes (web, worker, beat) can share, and the rule for the log level."""

import fcntl
import logging
import os
from logging.handlers import RotatingFileHandler

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SharedRotatingFileHandler(RotatingFileHandler):
    """A RotatingFileHandler for one file written by several processes.

    The stock handler loses lines there: each process rotates on its own count, renaming
    away the file another process just started. Here rotation happens under an exclusive
    lock on `<file>.lock`, is skipped when another process rotated meanwhile, and every
    process reopens the file once it sees that the name points at a new file."""

    def __init__(self, filename: str, *args, **kwargs) -> None:
        super().__init__(filename, *args, **kwargs)
        self.lock_path = f"{self.baseFilename}.lock"

    def _reopen_if_rotated(self) -> None:
        if self.stream is None:
            return
        try:
            on_disk = os.stat(self.baseFilename)
        except FileNotFoundError:
            on_disk = None
        opened = os.fstat(self.stream.fileno())
        if on_disk is None or (on_disk.st_dev, on_disk.st_ino) != (opened.st_dev, opened.st_ino):
            self.stream.close()
            self.stream = self._open()

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802  (logging's name)
        self._reopen_if_rotated()
        return bool(super().shouldRollover(record))

    def doRollover(self) -> None:  # noqa: N802  (logging's name)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                # Another process may have rotated while this one waited for the lock.
                self._reopen_if_rotated()
                if self.stream is None:
                    self.stream = self._open()
                self.stream.seek(0, os.SEEK_END)
                if self.stream.tell() < self.maxBytes:
                    return
                super().doRollover()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def resolve_log_level(env_level: str | None, configured_level: str | None) -> tuple[str, str]:
    """The log level and where it came from: LOG_LEVEL wins, then the configuration's
    `logging.level` (GlobalSettings.log_level), then INFO. Raises ValueError for a name
    that is not a level."""
    for level, source in ((env_level, "LOG_LEVEL"), (configured_level, "the global settings' log_level")):
        if level:
            name = level.strip().upper()
            if name == "WARN":
                name = "WARNING"
            if name not in LEVELS:
                raise ValueError(f"{source}={level!r} is not a log level (use one of {', '.join(LEVELS)})")
            return name, source
    return "INFO", "the default"
