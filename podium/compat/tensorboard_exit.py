"""A tensorboardX writer left open closes quietly at exit on Python 3.12+.

tensorboardX closes every `SummaryWriter` in an `atexit` callback by putting a stop signal on a
`multiprocessing.Queue`; the first `put` starts the queue's feeder thread. Since Python 3.12 an
atexit callback may not start a thread, so a writer that was never written to and never closed
(Catalyst's TensorBoard logger when a run stops with an error before its first epoch end, e.g.
a full disk) prints "Exception ignored in atexit callback ... RuntimeError: can't create new
thread at interpreter shutdown" after podium's one-line error (seen on 3.12.1).

When exactly that happens nothing was ever queued, so the worker thread (a daemon) has nothing
to write: the stop signal is skipped and the writer's close goes on (flush, close the file).
Any other error is raised as before.
"""

__all__ = ["apply"]


def _stop(self) -> None:
    try:
        self._queue.put(self._shutdown_signal)
    except RuntimeError as error:
        if "interpreter shutdown" not in str(error):
            raise
        return  # no feeder thread, so nothing was queued: the daemon worker has nothing pending
    self.join()


def apply() -> None:
    from tensorboardX import event_file_writer

    event_file_writer._EventLoggerThread.stop = _stop
