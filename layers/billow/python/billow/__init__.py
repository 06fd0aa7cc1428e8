"""Billow: a serverless billing engine that speaks the Lago REST API and bills with Stripe."""
