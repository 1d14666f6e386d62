"""Controllers: the VM controller, the migration controller, their pod builders, leader election."""
