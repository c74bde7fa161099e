"""The embedded offline demo: synthetic raw data in the real formats, served from loopback."""
