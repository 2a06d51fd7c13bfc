"""The topology helper: one declarative file to VLANs, bridges, Docker networks, firewall, DHCP."""
