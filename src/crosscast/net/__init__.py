"""What the relay and the topology helper share: namespaces, the packet socket, the frame codec."""
