"""The operators' view: dataset gauges, the metrics catalog and the contribution report.

Everything here reads what the writers stored (the episodes index and the shard listing on S3)
rather than counting events in a process, so the numbers survive restarts and agree with what an
ML team or an auditor would find in the bucket.

- :mod:`~robolake.ops.metrics` -- the exporter's metrics (one module, bounded labels);
- :mod:`~robolake.ops.episodes` -- the newest index row per episode, and organisations;
- :mod:`~robolake.ops.attribution` -- shard bytes attributed to the episodes they hold;
- :mod:`~robolake.ops.inventory` -- one scan of the bucket: the dataset's totals and splits;
- :mod:`~robolake.ops.exporter` -- ``robolake exporter``: the scan, periodically, on ``/metrics``;
- :mod:`~robolake.ops.contributions` -- ``robolake report contributions``;
- :mod:`~robolake.ops.catalog` -- ``robolake metrics catalog``: docs/metrics.md from the code;
- :mod:`~robolake.ops.cli` -- the subcommands.
"""
