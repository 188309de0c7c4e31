# The `rgunicorn.error` logger given to hooks as `worker.log` and
# `server.log`: a logging.Handler that forwards each formatted record to a
# sink written in Rust (the worker's error log). Loaded by error_log.rs.
import logging

class ErrorLogHandler(logging.Handler):
    def __init__(self, sink):
        super().__init__()
        self.sink = sink

    def emit(self, record):
        try:
            self.sink(record.levelno, self.format(record))
        except Exception:
            self.handleError(record)

def error_logger(name, sink, level):
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        if isinstance(handler, ErrorLogHandler):
            logger.removeHandler(handler)
    logger.addHandler(ErrorLogHandler(sink))
    logger.setLevel(level)
    logger.propagate = False
    return logger
