"""Use cases, one module per resource, each function one use case (Lago's service objects)."""
