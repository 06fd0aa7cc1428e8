"""Adapters: DynamoDB, Secrets Manager, EventBridge, Stripe and outgoing HTTP."""
