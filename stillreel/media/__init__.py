"""Media in and out: input fetching and decoding, MP4 encoding."""
