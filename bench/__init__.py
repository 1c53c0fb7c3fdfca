"""podtrail's benchmark: the operator against a bare watch and kube-state-metrics, same load."""
