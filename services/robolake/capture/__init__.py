"""The capture-device side: record episodes, spool them to disk, upload them reliably.

- ``spool.py``     every chunk is on local disk before it is uploaded, with a journal per episode,
                   so a crashed or rebooted device resumes where it stopped
- ``retry.py``     exponential backoff with jitter that honours ``Retry-After``
- ``uploader.py``  the HTTP calls to a collector, each retried until it is acknowledged
- ``client.py``    ``CaptureClient``: open an episode, append rows, close; resume after a crash
- ``simulator.py`` many capture points at once, for the demo and the benchmarks
"""
