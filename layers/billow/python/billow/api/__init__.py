"""The Lago REST API (/api/v1) on Powertools' HTTP API resolver."""
