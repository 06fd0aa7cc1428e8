"""One Powertools Router per Lago resource."""
