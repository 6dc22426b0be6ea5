//! Kernel data path: bridge, veth, VXLAN, FDB, routes, netns entry, and the sleeve.
