"""The VM controller: a launcher pod per running VM, and the VM status that tells where its guest runs."""
