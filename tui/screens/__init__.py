"""The views of `murmur top`: one screen each, plus the dialogs."""
