"""Charging invoices through Stripe, and settling them from what Stripe reports.

How an invoice is paid at most once, with no refund needed:

- Charge attempt ``n`` of an invoice is one PaymentIntent created with the idempotency
  key ``invoice-payment-{invoice}-{n}``: a retried message, a crash after Stripe answered,
  or two consumers racing all reach the same PaymentIntent.
- An attempt is *in flight* from the moment it is requested until its outcome is known.
  While it is, nothing else may start taking money: a manual retry and a new payment link
  are refused (Lago's 405 ``payment_processor_is_currently_handling_payment``). An attempt
  Stripe has been silent about for an hour is looked up in Stripe and settled from what
  Stripe says; one Stripe never saw is asked for again under its own key, never replaced
  by a new attempt, so a charge still under way and its replay become one PaymentIntent.
- Before charging, the invoice's open payment link is closed in Stripe. If the customer
  already paid through it, that payment settles the invoice and nothing is charged.
- Only a PaymentIntent Billow created for the invoice (an attempt or the payment link),
  for the invoice's customer, currency and whole amount, settles it; anything else is
  recorded and reported to the finance team, never applied.
- Payment status only moves forward: ``succeeded`` is final, and a failure counts only
  for the attempt in flight. A payment that still lands twice (a payment made outside
  Billow's control, or after the invoice was voided) is refunded.
- A refusal Stripe will repeat (a revoked key, a missing permission, a customer or card
  Stripe no longer has) fails the attempt at once, visibly, instead of being retried.

One module per use case: ``charging`` (the payments queue's consumer), ``attempts``
(retries, dunning, the attempt in flight and asking Stripe about it), ``payment_links``
(``payment_url``), ``voiding``, ``settlement`` (applying what Stripe says), and the pieces
they share: ``records`` (the invoice as they read and write it) and ``checkout_pages``;
the customer's Stripe account is ``stripe_connection.stripe_account``.
"""
