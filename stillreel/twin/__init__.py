"""``stillreel twin``: an embedded stillreel server that unmodified fal clients reach without code changes."""
