"""Multi-run pipelines: they sit above the methods and call the engine several times (the demo, the
self-rewarding loop). Nothing below this package imports it."""
