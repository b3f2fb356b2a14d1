"""The ``alertpipe`` command line."""
