"""Pure domain: models and rules with no AWS, HTTP or Stripe in them."""
