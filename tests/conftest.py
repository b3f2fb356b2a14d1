"""Shared by every test folder: this folder is on ``sys.path`` (pytest puts a rootdir conftest's
folder there), so helpers such as :mod:`engine_process` import by name."""
