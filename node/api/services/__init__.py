"""The gRPC servicers of a node: ClusterService, NodeService and JoinService."""
