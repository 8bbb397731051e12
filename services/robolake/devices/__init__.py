"""The device registry: who may upload, and for which capture point and organisation.

Its own package because three parts of the house need it and none of them owns it: the collector
authenticates against it, the ``robolake devices`` commands manage it, and the simulator enrols
in it. Readers of the dataset do not: the collector stamps each episode's organisation into its
records and the writer keeps it in the episodes index, so only index rows written before that
fall back to the registry (:func:`robolake.dataset.episodes.legacy_organisations`).

- ``registry.py``  the registry file: an append-only journal of enrolments and revocations
- ``enrolment.py`` bulk enrolment files (CSV, JSON) for ``robolake devices import``
- ``cli.py``       ``robolake devices add|import|revoke|list|compact``
"""
