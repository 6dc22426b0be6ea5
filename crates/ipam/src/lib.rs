//! Sans-IO address management: the ring of ranges CRDT, space requests, allocations.
