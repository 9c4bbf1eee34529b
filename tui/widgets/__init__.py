"""Widgets of `murmur top` that Textual does not ship in the shape needed."""
