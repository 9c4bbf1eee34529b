"""The control plane: one replicated log of the cluster's jobs, kept by Raft.

    raft/         Raft as a pure state machine (election, log, snapshots) and its simulator
    consensus/    the machine driven on real time and gRPC streams; leadership, voters
    queue/        the replicated job queue: commands, records, the state they build,
                  ClusterJobs (propose, read), forwarding to the leader, the archive
    leader/       what the leader does: place jobs, hand runs to nodes, reconcile,
                  drains, retention
    cluster_view  members (gossip) joined with who leads (Raft), as the API shows them
    drain         an admin's drain of this node, committed to the log
    run_reporter  this node's run ends, proposed to the log

It may use the agent (this node's runs) and membership; the agent never imports it.
"""
