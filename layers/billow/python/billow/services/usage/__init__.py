"""Usage-based billing: events in, aggregates kept, charges billed and shown."""
