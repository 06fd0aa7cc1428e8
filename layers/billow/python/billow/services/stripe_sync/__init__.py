"""Billow's catalog and subscriptions mirrored in Stripe Billing (seed 004), one module
per use case: syncing one object (``mirror``: plans, add-ons, coupons and
subscriptions), syncing everything when a connection starts (``backfill``), handing
running subscriptions over (``handover``), what Stripe's subscriptions need from
Billow's (``subscriptions``), Stripe's invoices copied in (``invoices``), and asking
again for what failed (``resync``). What Billow's writes ask of the sync lives below
this package, in ``billow.services.stripe_sync_requests``."""
