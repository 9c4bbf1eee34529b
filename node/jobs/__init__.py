"""Jobs on a node: validation, the local queue, GPU allocation, lifecycle and logs."""
