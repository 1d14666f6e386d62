"""The VM launcher: the process in a VM's pod that holds the guest on its node.

`virtmigrate-launcher` (virtmigrate/cmd/launcher.py) parses the command line defined by
virtmigrate.controller.vm.pods, then `holder.Launcher` starts the domain (start mode) or waits for an
incoming migration (receive mode) on the node's libvirt (`qemu:///system`, through domain.LibvirtNode),
and holds it, deciding with the pure functions of decide.py when to exit and with which code
(exitcodes.py). The readiness probe is `virtmigrate-launcher --probe` (probe.py).
"""
