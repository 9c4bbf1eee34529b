"""What the elected leader does besides Raft: place jobs, hand runs to nodes,
reconcile with the nodes' own records, and give up the runs of dead nodes."""
