"""The evacuation controller: a cordoned or drained node's VMs leave it by live migration."""
