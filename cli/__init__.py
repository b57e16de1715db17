"""The `repack` command line: thin click commands over the library."""
