"""The dataset as Apache Iceberg tables: names, schemas, catalog access and offset-carrying commits.

Module map:

- ``layout``   the one place that spells the table layout: namespace, table names, locations,
  data-file and checkpoint keys
- ``schema``   contract Arrow schemas -> table schemas (microsecond timestamps, the ``date``
  partition column, Parquet field ids), partition spec, sort order, table properties
- ``catalog``  the catalog from the ``ROBOLAKE_*`` endpoints; creating and evolving the tables
- ``offsets``  the Kafka offsets each commit records in its snapshot summary, and finding them
  again by walking the snapshot ancestry
- ``commits``  one partition's files committed with its offsets: compare-and-set on the recorded
  offset, so a zombie's late commit is refused
- ``errors``   what goes wrong, as :class:`~robolake.errors.RobolakeError`\\ s

The services speak only the REST catalog protocol through pyiceberg's configuration, so the same
code runs against Iceberg's own REST server (the local stack), Polaris, Lakekeeper, Nessie or
Glue's REST endpoint.
"""
