"""Use cases over the repository gate: records, search, bundles, import, sign-in, OAuth,
access administration, alarms, integrity, backups. Services take a ``RecordRepository`` bound
to a principal (or a ``SystemRepository`` built in ``hearth.wiring``) and never touch storage
directly."""
