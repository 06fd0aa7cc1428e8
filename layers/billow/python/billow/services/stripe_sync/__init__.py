"""Billow's catalog mirrored in Stripe Billing (seed 004), one module per use case:
asking for a sync with a catalog write (``requests``), syncing one object
(``catalog``), syncing everything when a connection starts (``backfill``), and
asking again for what failed (``resync``)."""
