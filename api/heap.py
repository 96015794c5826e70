"""The garbage collector of a serving process, set for a heap that is mostly long-lived.

CPython's cyclic collector runs each time 700 more container objects were made than
freed, and now and then looks at every object of the process. A server's heap is
mostly its code and the libraries' schemas, built once at start, and the job states it
caches; a request makes thousands of short-lived objects (a batch of 1,000 jobs, a
million). With the defaults a batch triggers dozens of collections and, every few
batches, a full one over the whole heap: tens of milliseconds each, in every request
in flight. So once the app is built, what exists is frozen (never looked at again:
`gc.freeze`) and a collection waits for `YOUNG_THRESHOLD` new objects. Reference
counting frees nearly everything a request makes anyway; the collector only finds
cycles, and memory held by one waits a little longer.
"""

import gc

YOUNG_THRESHOLD = 50_000
"""Container objects allocated (less those freed) before the youngest generation is
collected: CPython's default is 700."""

OLDER_THRESHOLDS = (20, 100)
"""Collections of one generation before the next one is collected too (CPython: 10, 10)."""


def settle_heap() -> None:
    """Freeze what the process has built so far, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
