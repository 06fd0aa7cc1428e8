"""What the API serves: one pydantic model per Lago object and per response body.

The routes return these models, so Powertools writes their JSON Schema into
``docs/openapi.json``. Request bodies stay with their services (``…Input`` models); these
describe only what goes out. Every model forbids unknown fields: a presenter that grows a
key the model does not declare fails loudly instead of having the key silently dropped,
so the document and the wire never disagree."""
