"""treadle's cluster: a durable run queue, workers on any machine, fenced leases, remote node tasks."""
